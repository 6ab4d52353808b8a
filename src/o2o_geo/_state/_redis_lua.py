"""The Lua scripts :class:`~o2o_geo.RedisState` runs on the server: the commit, a range read, forgetting a user.

Each runs atomically on the server; the state calls them by SHA1
(EVALSHA), loading them once and again after a NOSCRIPT.
"""

from __future__ import annotations

import hashlib

__all__ = ["NEVER", "SCRIPTS", "Script"]

#: The expiry score, in the user's key index, of a key that never expires (as NEVER in the commit script).
NEVER = 1e15

# The commit.  ARGV[1]: the checks, ARGV[2]: the writes (JSON arrays of arrays; keys as indexes into KEYS),
# ARGV[3...]: the values seen, as the server gave them (checks name them by their index into ARGV).
# Checks: ["v", key, i] key holds exactly ARGV[i]; ["n", key] key is absent; ["z", key, max, min, i, n] the ids
# of ZREVRANGEBYSCORE key max min are exactly ARGV[i .. i+n-1].  Writes: ["incr", key, delta, ttl],
# ["set", key, value, ttl] (ttl "0": none), ["rpush", key, member], ["zadd", key, score, member, retention],
# ["zseq", key, score, member, retention, seq key] (a zadd of "<seq>|member", seq the next of seq key, 16 digits:
# members of one score then sort in commit order),
# ["ukey", index key, member, expiry, now] (the user's key index),
# ["event", seq key, prefix, record, list key, set key, ts, ttl] (the next event seq: the record under
# prefix..seq, the seq appended to the list and added to the user's set, scored by ts); ["trim", key, prefix,
# retention]: after a zadd of score ts, drop the members scored below ts - retention; after an rpush, drop up
# to two head ids whose record (prefix..id) expired.  Returns 1, or 0: a check failed and nothing was written.
COMMIT = """
local NEVER = 1e15
for _, c in ipairs(cjson.decode(ARGV[1])) do
  local op, key = c[1], KEYS[c[2]]
  if op == 'v' then
    if redis.call('GET', key) ~= ARGV[c[3]] then return 0 end
  elseif op == 'n' then
    if redis.call('EXISTS', key) == 1 then return 0 end
  else
    local ids = redis.call('ZREVRANGEBYSCORE', key, c[3], c[4])
    if #ids ~= c[6] then return 0 end
    for j = 1, c[6] do
      if ids[j] ~= ARGV[c[5] + j - 1] then return 0 end
    end
  end
end
for _, w in ipairs(cjson.decode(ARGV[2])) do
  local op, key = w[1], KEYS[w[2]]
  if op == 'incr' then
    redis.call('INCRBYFLOAT', key, w[3])
    if w[4] ~= '0' then redis.call('EXPIRE', key, w[4]) end
  elseif op == 'set' then
    if w[4] == '0' then redis.call('SET', key, w[3]) else redis.call('SET', key, w[3], 'EX', w[4]) end
  elseif op == 'zadd' or op == 'zseq' then
    local member = w[4]
    if op == 'zseq' then member = string.format('%016d|', redis.call('INCR', KEYS[w[6]])) .. member end
    redis.call('ZADD', key, w[3], member)
    if w[5] ~= '0' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(w[3]) - tonumber(w[5])))
      redis.call('EXPIRE', key, w[5])
    end
  elseif op == 'event' then
    local seq = string.format('%d', redis.call('INCR', key))
    local set = KEYS[w[6]]
    if w[8] == '0' then redis.call('SET', w[3] .. seq, w[4]) else redis.call('SET', w[3] .. seq, w[4], 'EX', w[8]) end
    redis.call('RPUSH', KEYS[w[5]], seq)
    redis.call('ZADD', set, w[7], seq)
    if w[8] ~= '0' then
      redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (tonumber(w[7]) - tonumber(w[8])))
      redis.call('EXPIRE', set, w[8])
      for _ = 1, 2 do
        local head = redis.call('LINDEX', KEYS[w[5]], 0)
        if not head or redis.call('EXISTS', w[3] .. head) == 1 then break end
        redis.call('LPOP', KEYS[w[5]])
      end
    end
  elseif op == 'trim' then
    for _ = 1, 2 do
      local head = redis.call('LINDEX', key, 0)
      if not head or redis.call('EXISTS', w[3] .. head) == 1 then break end
      redis.call('LPOP', key)
    end
  elseif op == 'ukey' then
    -- the user's key index: scored by each key's expiry, trimmed of expired ones, living as long as the last
    redis.call('ZADD', key, w[4], w[3])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. w[5])
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if tonumber(last[2]) >= NEVER then redis.call('PERSIST', key)
    else redis.call('EXPIREAT', key, math.floor(tonumber(last[2])) + 1) end
  else  -- 'rpush'
    redis.call('RPUSH', key, w[3])
  end
end
return 1
"""

# The user's pushes with max >= ts >= min, latest first (of one time, the last committed first): KEYS the
# user's sorted set; ARGV max, min, the push key prefix.  Returns member, record, member, record, ...
RANGE = """
local ids, out = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2]), {}
for j, id in ipairs(ids) do
  out[2 * j - 1] = id
  out[2 * j] = redis.call('GET', ARGV[3] .. (string.match(id, '^%d+|(.*)$') or id))
end
return out
"""

# Forget a user: KEYS user, ukeys, upush, uevents, pushes, events, profile; ARGV the push and event key prefixes.
FORGET = """
for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do redis.call('DEL', k) end
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local p = string.match(m, '^%d+|(.*)$') or m  -- a member is '<seq>|<push id>' (in older data: the push id)
  redis.call('DEL', ARGV[1] .. p)
  redis.call('LREM', KEYS[5], 0, p)
end
for _, s in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('DEL', ARGV[2] .. s)
  redis.call('LREM', KEYS[6], 0, s)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[7])
return 1
"""


class Script:
    """A Lua script called by its SHA1 (EVALSHA), loaded once per state and again after a NOSCRIPT."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


SCRIPTS = {name: Script(text) for name, text in (("commit", COMMIT), ("range", RANGE), ("forget", FORGET))}

/// The Lua scripts behind the adapter's atomic operations. Each runs as one
/// `EVALSHA` (see ``LuaScript``).
enum BaldurScripts {
    /// Shared prologue: decode KEYS[1] as a JSON object, or return 0.
    /// A value that is not JSON, or JSON that is not an object, is "no match",
    /// never a script error (the Python script raises on non-JSON).
    private static let loadRecord = """
        local raw = redis.call('GET', KEYS[1])
        if not raw or not string.find(raw, '^%s*{') then return 0 end
        local ok, rec = pcall(cjson.decode, raw)
        if not ok or type(rec) ~= 'table' then return 0 end
        """

    private static let store = """
        if ttl_ms and ttl_ms > 0 then
            redis.call('SET', KEYS[1], new_value, 'PX', ttl_ms)
        else
            redis.call('SET', KEYS[1], new_value)
        end
        return 1
        """

    /// `casDictField`. KEYS = [key]; ARGV = [field, JSON of expected, JSON of
    /// the new record, ttl_ms or 0]. The expected value is compared by JSON
    /// type: strings as strings, numbers numerically, booleans, and null
    /// (which also matches a missing field, as the Python `dict.get` does).
    static let casDictField = LuaScript("""
        \(loadRecord)
        local current = rec[ARGV[1]]
        local expected = cjson.decode(ARGV[2])
        if expected == cjson.null then
            if current ~= nil and current ~= cjson.null then return 0 end
        elseif type(expected) ~= type(current) or current ~= expected then
            return 0
        end
        local new_value = ARGV[3]
        local ttl_ms = tonumber(ARGV[4])
        \(store)
        """)

    /// `casTakeover`. KEYS = [key]; ARGV = [JSON of the new record,
    /// stale_before, ttl_ms or 0]. Takes over iff status == "failed", or
    /// status == "executing" and started_at < stale_before.
    static let casTakeover = LuaScript("""
        \(loadRecord)
        local status = rec['status']
        local takeable = false
        if status == 'failed' then
            takeable = true
        elseif status == 'executing' then
            local started_at = tonumber(rec['started_at'])
            local stale_before = tonumber(ARGV[2])
            if started_at ~= nil and stale_before ~= nil and started_at < stale_before then
                takeable = true
            end
        end
        if not takeable then return 0 end
        local new_value = ARGV[1]
        local ttl_ms = tonumber(ARGV[3])
        \(store)
        """)

    /// `pushLimit`. KEYS = [key]; ARGV = [JSON element, max_len, ttl_ms or 0].
    /// Returns the length after the push, before the trim.
    static let pushLimit = LuaScript("""
        local length = redis.call('RPUSH', KEYS[1], ARGV[1])
        redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
        local ttl_ms = tonumber(ARGV[3])
        if ttl_ms and ttl_ms > 0 then redis.call('PEXPIRE', KEYS[1], ttl_ms) end
        return length
        """)

    /// Lock release. KEYS = [lock key, signal list]; ARGV = [owner]. Deletes
    /// only if the value still equals the owner, then leaves one token on the
    /// signal list (at most one, expiring) to wake the longest waiter.
    /// Returns 1 when deleted, 0 when the key is absent, -1 when another
    /// owner holds it.
    static let releaseLock = LuaScript("""
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then
            redis.call('DEL', KEYS[1])
            redis.call('LPUSH', KEYS[2], '1')
            redis.call('LTRIM', KEYS[2], 0, 0)
            redis.call('PEXPIRE', KEYS[2], 10000)
            return 1
        end
        if holder then return -1 end
        return 0
        """)

    /// Fenced acquire. KEYS = [lock key, fence counter]; ARGV = [owner, ttl_ms].
    /// Takes the lock and increments the counter in one step: the new token, or 0.
    static let acquireFenced = LuaScript("""
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
            return redis.call('INCR', KEYS[2])
        end
        return 0
        """)

    /// Fenced write. KEYS = [key, highest token seen]; ARGV = [JSON value, token].
    /// Stores the value iff the token is not lower than any token seen before.
    static let fencedSet = LuaScript("""
        local token = tonumber(ARGV[2])
        local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
        if token < highest then return 0 end
        redis.call('SET', KEYS[2], ARGV[2])
        redis.call('SET', KEYS[1], ARGV[1])
        return 1
        """)

    /// Lock extension. KEYS = [lock key]; ARGV = [owner, milliseconds, mode]
    /// where mode "replace" sets the remaining time to the milliseconds and
    /// "add" adds them to the remaining time. Returns the new remaining
    /// milliseconds, or 0 when the lock is not owned.
    static let extendLock = LuaScript("""
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        local ms = tonumber(ARGV[2])
        if ARGV[3] == 'add' then
            local left = redis.call('PTTL', KEYS[1])
            if left > 0 then ms = ms + left end
        end
        redis.call('PEXPIRE', KEYS[1], ms)
        return ms
        """)
}

/// The adapter's `async` calls: the same ``CacheCall``s as the synchronous
/// ones, sent on the event loop (see ``AsyncCacheProvider``).
extension RedisCacheAdapter: AsyncCacheProvider {
    /// Reads and decodes `key` (`GET`); `nil` when missing.
    @_specialize(where T == JSONValue)  // as the blocking calls are (see there)
    public func get<T: Decodable>(_ key: String, as type: T.Type) async throws -> T? {
        guard let nearCache else { return try await run("get", key) { () throws(RedisError) in getCall(key, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: key)
        switch nearLookup(get: full, in: nearCache) {
        case .kept(let bytes, let decoded): return try decode(bytes, decoded, key: key, as: type)
        case .fetch(.none):
            // Bypassed (tracking is down) or not keepable: a plain GET, nothing kept.
            defer { nearCache.store.readWithoutKeeping(full) }
            return try await run("get", key) { () throws(RedisError) in getCall(key, as: type) }
        case .fetch(let ticket):
            let replies = try await fetching("get", key, Self.fetchCommands("GET", full), ticket: ticket, in: nearCache)
            return try nearKeep(get: replies, key: key, ticket: ticket, as: type, in: nearCache)
        }
    }

    /// Stores `value` as compact JSON (`SET key json [EX s|PX ms]`, `defaultTTL` when `ttl` is nil).
    public func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws {
        try await run("set", key) { () throws(RedisError) in try setCall(key, value, ttl: ttl) }
    }

    /// Deletes `key` (`DEL`); `true` when it existed.
    @discardableResult
    public func delete(_ key: String) async throws -> Bool {
        try await run("delete", key) { () throws(RedisError) in deleteCall(key) }
    }

    /// `true` when `key` exists (`EXISTS`).
    public func exists(_ key: String) async throws -> Bool {
        guard let nearCache else { return try await run("exists", key) { () throws(RedisError) in existsCall(key) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: key)
        if let kept = nearAnswer(exists: full, in: nearCache) { return kept }
        defer { nearCache.store.readWithoutKeeping(full) }
        return try await run("exists", key) { () throws(RedisError) in existsCall(key) }
    }

    /// Adds `amount` (`INCRBY`) and returns the new value.
    @discardableResult
    public func incr(_ key: String, by amount: Int64) async throws -> Int64 {
        try await run("incr", key) { () throws(RedisError) in counterCall("INCRBY", key, amount) }
    }

    /// Subtracts `amount` (`DECRBY`) and returns the new value.
    @discardableResult
    public func decr(_ key: String, by amount: Int64) async throws -> Int64 {
        try await run("decr", key) { () throws(RedisError) in counterCall("DECRBY", key, amount) }
    }

    /// Sets the time to live (`EXPIRE`, or `PEXPIRE` for fractional seconds); `true` when the key exists.
    @discardableResult
    public func expire(_ key: String, ttl: Duration) async throws -> Bool {
        try await run("expire", key) { () throws(RedisError) in try expireCall(key, ttl: ttl) }
    }

    /// How long `key` has left (`PTTL`).
    public func lifetime(of key: String) async throws -> KeyLifetime {
        try await run("lifetime", key) { () throws(RedisError) in lifetimeCall(key) }
    }

    /// Stores `value` iff `key` is absent, TTL included, atomically (`SET key json NX [EX|PX]`).
    public func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws -> Bool {
        try await run("setnx", key) { () throws(RedisError) in try setnxCall(key, value, ttl: ttl) }
    }

    /// Compare-and-set on one field of a JSON record (one `EVALSHA`; see ``CacheProvider``).
    public func casDictField<T: Encodable>(
        _ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?
    ) async throws -> Bool {
        try await run("casDictField", key) { () throws(RedisError) in
            try casDictFieldCall(key, field: field, expected: expected, newValue: newValue, ttl: ttl)
        }
    }

    /// Takes over a failed or stale executing record (one `EVALSHA`; see ``CacheProvider``).
    public func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) async throws -> Bool {
        try await run("casTakeover", key) { () throws(RedisError) in
            try casTakeoverCall(key, newRecord: newRecord, staleBefore: staleBefore, ttl: ttl)
        }
    }

    /// Stores `value` iff `fencingToken` is not stale (one `EVALSHA` over `key` and `{key}:fence-seen`, in the key's slot).
    public func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) async throws -> Bool {
        try await run("setIfFenced", key) { () throws(RedisError) in try setIfFencedCall(key, value, fencingToken: fencingToken) }
    }

    /// Reads many keys in one `MGET`; missing keys are omitted.
    @_specialize(where T == JSONValue)
    public func mget<T: Decodable>(_ keys: [String], as type: T.Type) async throws -> [String: T] {
        guard !keys.isEmpty else { return [:] }
        guard let nearCache else { return try await run("mget", "\(keys.count) keys") { () throws(RedisError) in mgetCall(keys, as: type) } }
        switch try nearMget(keys, as: type, in: nearCache) {
        case .answered(let found): return found
        case .fetch(let call, let count): return try await run("mget", "\(count) keys") { () throws(RedisError) in call }
        }
    }

    /// Stores many values: `MSET`, or with a TTL one `SET ... EX|PX` per key
    /// written back to back (not a transaction, as in the synchronous call).
    public func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) async throws {
        guard !values.isEmpty else { return }
        let prefix = keyPrefix.resolve()
        guard let nearCache else { return try await msetUncached(values, ttl: ttl, prefix: prefix) }
        try await nearCache.writing(keys: values.keys.map { NearKey(prefix: prefix, key: $0) }) { try await msetUncached(values, ttl: ttl, prefix: prefix) }
    }

    private func msetUncached<T: Encodable>(_ values: [String: T], ttl: Duration?, prefix: String) async throws {
        try await logged("mset", "\(values.count) keys") {
            guard let ttl else {
                try await rawClient.send(try msetCommand(values, prefix: prefix))
                return
            }
            let expiry = try CacheArguments.ttlArguments(ttl)
            var commands: [[RedisArgument]] = []
            commands.reserveCapacity(values.count)
            for (key, value) in values {
                commands.append(CacheArguments.setCommand(RedisArgument(prefix: prefix, key: key), try jsonCoders.encode(value), expiry: expiry))
            }
            for reply in try await rawClient.pipeline(commands) { try reply.throwingServerError() }
        }
    }

    /// Deletes many keys in one `DEL`; returns how many existed.
    @discardableResult
    public func mdelete(_ keys: [String]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        guard let nearCache else { return try await run("mdelete", "\(keys.count) keys") { () throws(RedisError) in mdeleteCall(keys) } }
        let prefix = keyPrefix.resolve()
        return try await nearCache.writing(keys: keys.map { NearKey(prefix: prefix, key: $0) }) {
            try await run("mdelete", "\(keys.count) keys") { () throws(RedisError) in mdeleteCall(keys) }
        }
    }

    /// Reads one hash field (`HGET`) and decodes it.
    public func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) async throws -> T? {
        guard let nearCache else { return try await run("hget", name) { () throws(RedisError) in hgetCall(name, field: field, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: name)
        if let kept = try nearAnswer(hget: full, name: name, field: field, as: type, in: nearCache) { return kept }
        defer { nearCache.store.readWithoutKeeping(full) }
        return try await run("hget", name) { () throws(RedisError) in hgetCall(name, field: field, as: type) }
    }

    /// Stores one hash field as JSON (`HSET`).
    public func hset<T: Encodable>(_ name: String, field: String, _ value: T) async throws {
        try await run("hset", name) { () throws(RedisError) in try hsetCall(name, field: field, value) }
    }

    /// Reads every field of a hash (`HGETALL`).
    public func hgetall<T: Decodable>(_ name: String, as type: T.Type) async throws -> [String: T] {
        guard let nearCache else { return try await run("hgetall", name) { () throws(RedisError) in hgetallCall(name, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: name)
        switch try nearLookup(hgetall: full, name: name, as: type, in: nearCache) {
        case .answered(let fields): return fields
        case .fetch(.none):
            defer { nearCache.store.readWithoutKeeping(full) }
            return try await run("hgetall", name) { () throws(RedisError) in hgetallCall(name, as: type) }
        case .fetch(let ticket):
            let replies = try await fetching("hgetall", name, Self.fetchCommands("HGETALL", full), ticket: ticket, in: nearCache)
            return try nearKeep(hgetall: replies, name: name, ticket: ticket, as: type, in: nearCache)
        }
    }

    /// `RPUSH` + `LTRIM` + `PEXPIRE` in one `EVALSHA`; returns the pre-trim length.
    @discardableResult
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) async throws -> Int {
        try await run("pushLimit", key) { () throws(RedisError) in try pushLimitCall(key, value, maxLength: maxLength, ttl: ttl) }
    }

    /// Elements `start...end` of a list (`LRANGE`), decoded.
    public func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) async throws -> [T] {
        try await run("listRange", key) { () throws(RedisError) in listRangeCall(key, start: start, end: end, as: type) }
    }

    /// `true` when Redis answers `PING`; logs the failure at info otherwise.
    public func healthCheck() async -> Bool {
        do {
            try await rawClient.ping()
            return true
        } catch {
            logger.info("redis health check failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Deletes every key under the prefix (`SCAN MATCH prefix* COUNT 500` + `DEL`), never `FLUSHDB`.
    @discardableResult
    public func flushAll() async throws -> Int {
        let prefix = keyPrefix.resolve()
        return try await logged("flushAll", prefix) {
            try await rawClient.telemetry.operation("flushAll") {
                let deleted = try await deleteAll(under: prefix)
                nearCache?.store.invalidateAll(fromServer: false)
                return deleted
            }
        }
    }

    /// Every key matching `pattern` under the prefix, without it (a full `SCAN`, never `KEYS`).
    public func keys(_ pattern: String) async throws -> [String] {
        let prefix = keyPrefix.resolve()
        return try await logged("keys", pattern) {
            try await rawClient.telemetry.operation("keys") { try await scanAll(pattern, under: prefix) }
        }
    }

    private func deleteAll(under prefix: String) async throws -> Int {
        let match = Self.globEscaped(prefix) + "*"
        var deleted = 0
        var cursor: UInt64 = 0
        while true {
            let page = try await scanPageCall(match: match, count: 500, cursor: cursor).run(on: rawClient)
            deleted += try await deleteKeys(page.keys)
            cursor = page.cursor
            if cursor == 0 { break }
        }
        logFlushed(prefix, deleted)
        return deleted
    }

    private func deleteKeys(_ keys: [[UInt8]]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        let delete = CacheCall<Int64>(.command(["DEL"] + keys.map { RedisArgument(bytes: $0) })) { reply throws(RedisError) in
            try reply.expectInteger("DEL")
        }
        return Int(try await delete.run(on: rawClient))
    }

    private func logFlushed(_ prefix: String, _ deleted: Int) {
        logger.info("redis cache flushed its prefix", metadata: ["prefix": "\(prefix)", "deleted": "\(deleted)"])
    }

    private func scanAll(_ pattern: String, under prefix: String) async throws -> [String] {
        var found: [String] = []
        var cursor: UInt64 = 0
        repeat {
            let page = try await scanPageCall(match: Self.globEscaped(prefix) + pattern, count: 1000, cursor: cursor).run(on: rawClient)
            found += page.keys.map { Self.strip(prefix, from: $0) }
            cursor = page.cursor
        } while cursor != 0
        return Self.unique(found)
    }

    /// One `SCAN cursor MATCH prefix+pattern COUNT count` page, keys without the prefix.
    public func scan(_ pattern: String, count: Int, cursor: UInt64) async throws -> (cursor: UInt64, keys: [String]) {
        try await run("scan", pattern) { () throws(RedisError) in try scanCall(pattern, count: count, cursor: cursor) }
    }

    /// Closes the client gracefully (see ``RedisClient/shutdown()``).
    public func close() async {
        nearCache?.tracker.close()
        await rawClient.shutdown()
    }

    /// Drops every connection and proves Redis is back with `PING`.
    public func reconnect() async throws { try await rawClient.reconnect() }

    // MARK: - Internals

    @inline(__always)
    private func run<R>(_ operation: String, _ key: String, _ make: () throws(RedisError) -> CacheCall<R>) async throws -> R {
        guard let nearCache, NearCache.writes.contains(operation) else {
            return try await logged(operation, key) { try await make().run(on: rawClient) }
        }
        return try await nearCache.writing(NearKey(prefix: keyPrefix.resolve(), key: key)) { try await logged(operation, key) { try await make().run(on: rawClient) } }
    }

    /// A near-cached read's pipeline; a failure forgets its placeholder.
    private func fetching(
        _ operation: String, _ key: String, _ commands: [[RedisArgument]], ticket: NearCacheStore.Ticket?, in nearCache: NearCache
    ) async throws -> [RedisReply] {
        do { return try await logged(operation, key) { try await rawClient.pipeline(commands) } } catch {
            nearCache.store.abandon(ticket)
            throw error
        }
    }

    /// Runs one operation; logs a failure at debug level with the operation and key, never the value.
    private func logged<R>(_ operation: String, _ key: String, _ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch let error as RedisError {
            logger.debug("redis cache operation failed", metadata: [
                "operation": "\(operation)", "key": "\(key)", "error.code": "\(error.code)", "error": "\(error.message)",
            ])
            throw error
        }
    }
}

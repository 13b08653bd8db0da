/// The in-memory store's `async` calls. Nothing here waits (locks wait in
/// ``DistributedLock``'s async calls, suspending), so each runs the
/// synchronous call of the same name at once.
extension InMemoryCacheAdapter: AsyncCacheProvider {
    /// The in-memory `get` (see ``AsyncCacheProvider``).
    public func get<T: Decodable>(_ key: String, as type: T.Type) async throws -> T? {
        try syncCall { () throws(RedisError) in try get(key, as: type) }
    }

    /// The in-memory `set`.
    public func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws {
        try syncCall { () throws(RedisError) in try set(key, value, ttl: ttl) }
    }

    /// The in-memory `delete`.
    @discardableResult
    public func delete(_ key: String) async throws -> Bool {
        try syncCall { () throws(RedisError) in try delete(key) }
    }

    /// The in-memory `exists`.
    public func exists(_ key: String) async throws -> Bool {
        try syncCall { () throws(RedisError) in try exists(key) }
    }

    /// The in-memory `incr`.
    @discardableResult
    public func incr(_ key: String, by amount: Int64) async throws -> Int64 {
        try syncCall { () throws(RedisError) in try incr(key, by: amount) }
    }

    /// The in-memory `decr`.
    @discardableResult
    public func decr(_ key: String, by amount: Int64) async throws -> Int64 {
        try syncCall { () throws(RedisError) in try decr(key, by: amount) }
    }

    /// The in-memory `expire`.
    @discardableResult
    public func expire(_ key: String, ttl: Duration) async throws -> Bool {
        try syncCall { () throws(RedisError) in try expire(key, ttl: ttl) }
    }

    /// The in-memory `lifetime(of:)`.
    public func lifetime(of key: String) async throws -> KeyLifetime {
        try syncCall { () throws(RedisError) in try lifetime(of: key) }
    }

    /// The in-memory `setnx`.
    public func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws -> Bool {
        try syncCall { () throws(RedisError) in try setnx(key, value, ttl: ttl) }
    }

    /// The in-memory `casDictField`.
    public func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?) async throws -> Bool {
        try syncCall { () throws(RedisError) in try casDictField(key, field: field, expected: expected, newValue: newValue, ttl: ttl) }
    }

    /// The in-memory `casTakeover`.
    public func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) async throws -> Bool {
        try syncCall { () throws(RedisError) in try casTakeover(key, newRecord: newRecord, staleBefore: staleBefore, ttl: ttl) }
    }

    /// The in-memory `setIfFenced`.
    public func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) async throws -> Bool {
        try syncCall { () throws(RedisError) in try setIfFenced(key, value, fencingToken: fencingToken) }
    }

    /// The in-memory `mget`.
    public func mget<T: Decodable>(_ keys: [String], as type: T.Type) async throws -> [String: T] {
        try syncCall { () throws(RedisError) in try mget(keys, as: type) }
    }

    /// The in-memory `mset`.
    public func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) async throws {
        try syncCall { () throws(RedisError) in try mset(values, ttl: ttl) }
    }

    /// The in-memory `mdelete`.
    @discardableResult
    public func mdelete(_ keys: [String]) async throws -> Int {
        try syncCall { () throws(RedisError) in try mdelete(keys) }
    }

    /// The in-memory `hget`.
    public func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) async throws -> T? {
        try syncCall { () throws(RedisError) in try hget(name, field: field, as: type) }
    }

    /// The in-memory `hset`.
    public func hset<T: Encodable>(_ name: String, field: String, _ value: T) async throws {
        try syncCall { () throws(RedisError) in try hset(name, field: field, value) }
    }

    /// The in-memory `hgetall`.
    public func hgetall<T: Decodable>(_ name: String, as type: T.Type) async throws -> [String: T] {
        try syncCall { () throws(RedisError) in try hgetall(name, as: type) }
    }

    /// The in-memory `pushLimit`.
    @discardableResult
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) async throws -> Int {
        try syncCall { () throws(RedisError) in try pushLimit(key, value, maxLength: maxLength, ttl: ttl) }
    }

    /// The in-memory `listRange`.
    public func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) async throws -> [T] {
        try syncCall { () throws(RedisError) in try listRange(key, start: start, end: end, as: type) }
    }

    /// `true` until closed.
    public func healthCheck() async -> Bool {
        { healthCheck() }()
    }

    /// The in-memory `flushAll`.
    @discardableResult
    public func flushAll() async throws -> Int {
        try syncCall { () throws(RedisError) in try flushAll() }
    }

    /// The in-memory `keys`.
    public func keys(_ pattern: String) async throws -> [String] {
        try syncCall { () throws(RedisError) in try keys(pattern) }
    }

    /// The in-memory `scan`.
    public func scan(_ pattern: String, count: Int, cursor: UInt64) async throws -> (cursor: UInt64, keys: [String]) {
        try syncCall { () throws(RedisError) in try scan(pattern, count: count, cursor: cursor) }
    }

    /// Closes the store; later calls throw ``RedisError/Code/closed``.
    public func close() async {
        { close() }()
    }

    /// Reopens a closed store (its data kept).
    public func reconnect() async throws {
        try syncCall { () throws(RedisError) in try reconnect() }
    }
}

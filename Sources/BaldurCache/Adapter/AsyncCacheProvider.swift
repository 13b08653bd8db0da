/// Baldur's cache contract for `async` code: every call of
/// ``CacheProvider``, suspending instead of blocking (Python Baldur's
/// `AsyncCacheProviderInterface`, `aget`/`asetnx`/`acas_dict_field`/
/// `adelete`, and the rest of the contract).
///
/// ``RedisCacheAdapter`` runs these calls on BaldurCache's event loop,
/// pipelined with every other task's; ``InMemoryCacheAdapter`` answers them
/// at once. Both conform to ``CacheProvider`` too, with the same names:
/// `async` code gets these, synchronous code the blocking ones.
///
/// ```swift
/// let cache = try RedisCacheAdapter(url: "redis://127.0.0.1:6379/0")
/// try await cache.set("user:42", ["name": "Ada"] as JSONValue, ttl: .seconds(300))
/// let user = try await cache.get("user:42")              // JSONValue?
/// try await cache.getLock("user:42:update").withLock {
///     _ = try await cache.incr("user:42:version")
/// }
/// ```
///
/// Errors are ``RedisError`` values as in ``CacheProvider``, plus
/// `CancellationError` when the calling task is cancelled.
public protocol AsyncCacheProvider: CacheLockProvider {

    /// Reads and decodes `key` (`GET`); `nil` when missing.
    func get<T: Decodable>(_ key: String, as type: T.Type) async throws -> T?
    /// Stores `value` as JSON (`SET key json [EX|PX]`), with `ttl` or the default TTL.
    func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws
    /// Deletes `key` (`DEL`); `true` when it existed.
    @discardableResult
    func delete(_ key: String) async throws -> Bool
    /// `true` when `key` exists (`EXISTS`).
    func exists(_ key: String) async throws -> Bool
    /// Adds `amount` (`INCRBY`); returns the new value.
    @discardableResult
    func incr(_ key: String, by amount: Int64) async throws -> Int64
    /// Subtracts `amount` (`DECRBY`); returns the new value.
    @discardableResult
    func decr(_ key: String, by amount: Int64) async throws -> Int64
    /// Sets the time to live (`EXPIRE`/`PEXPIRE`); `true` when the key exists.
    @discardableResult
    func expire(_ key: String, ttl: Duration) async throws -> Bool
    /// How long `key` has left (`PTTL`): ``KeyLifetime/missing``,
    /// ``KeyLifetime/persistent``, or the time to the millisecond.
    func lifetime(of key: String) async throws -> KeyLifetime
    /// Stores `value` iff `key` is absent (`SET key json NX [EX|PX]`).
    func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws -> Bool
    /// Compare-and-set on one field of a JSON record (one `EVALSHA`).
    func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?) async throws -> Bool
    /// Takes over a failed or stale executing record (one `EVALSHA`).
    func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) async throws -> Bool
    /// Stores `value` iff `fencingToken` is not stale (one `EVALSHA`).
    func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) async throws -> Bool
    /// Reads many keys (`MGET`); missing keys are omitted.
    func mget<T: Decodable>(_ keys: [String], as type: T.Type) async throws -> [String: T]
    /// Stores many values (`MSET`, or pipelined `SET ... EX|PX` with a TTL).
    func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) async throws
    /// Deletes many keys (`DEL`); returns how many existed.
    @discardableResult
    func mdelete(_ keys: [String]) async throws -> Int
    /// Reads one hash field (`HGET`).
    func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) async throws -> T?
    /// Stores one hash field as JSON (`HSET`).
    func hset<T: Encodable>(_ name: String, field: String, _ value: T) async throws
    /// Reads every field of a hash (`HGETALL`).
    func hgetall<T: Decodable>(_ name: String, as type: T.Type) async throws -> [String: T]
    /// Appends and trims a bounded list (one `EVALSHA`); returns the pre-trim length.
    @discardableResult
    func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) async throws -> Int
    /// Elements `start...end` of a list (`LRANGE`).
    func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) async throws -> [T]
    /// `true` when the store answers (`PING`).
    func healthCheck() async -> Bool
    /// Deletes every key under the prefix (`SCAN` + `DEL`); returns how many.
    @discardableResult
    func flushAll() async throws -> Int
    /// Every key matching `pattern` under the prefix (a full `SCAN`).
    func keys(_ pattern: String) async throws -> [String]
    /// One `SCAN` page under the prefix.
    func scan(_ pattern: String, count: Int, cursor: UInt64) async throws -> (cursor: UInt64, keys: [String])
    /// Closes gracefully: calls in flight finish, later calls fail with `closed`.
    func close() async
    /// Drops every connection and proves the store is back (`PING`).
    func reconnect() async throws
}

extension AsyncCacheProvider {
    /// Seconds left for `key` (`PTTL`, rounded to the second as `TTL`
    /// rounds): `nil` when it has no expiry, `-2` when it does not exist.
    @available(*, deprecated, message: "use lifetime(of:), which tells a missing key from a persistent one and keeps the milliseconds")
    public func ttl(_ key: String) async throws -> Int? { try await lifetime(of: key).legacySeconds }

    /// Reads `key` as a ``JSONValue`` (`GET`).
    public func get(_ key: String) async throws -> JSONValue? { try await get(key, as: JSONValue.self) }

    /// Stores `value` with the default TTL (`SET`).
    public func set<T: Encodable>(_ key: String, _ value: T) async throws { try await set(key, value, ttl: nil) }

    /// Adds 1 (`INCRBY key 1`).
    @discardableResult
    public func incr(_ key: String) async throws -> Int64 { try await incr(key, by: 1) }

    /// Subtracts 1 (`DECRBY key 1`).
    @discardableResult
    public func decr(_ key: String) async throws -> Int64 { try await decr(key, by: 1) }

    /// Stores `value` iff absent, without TTL (`SET NX`).
    public func setnx<T: Encodable>(_ key: String, _ value: T) async throws -> Bool { try await setnx(key, value, ttl: nil) }

    /// Compare-and-set without TTL (one `EVALSHA`).
    public func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T) async throws -> Bool {
        try await casDictField(key, field: field, expected: expected, newValue: newValue, ttl: nil)
    }

    /// Takes over a record without a TTL (one `EVALSHA`).
    public func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double) async throws -> Bool {
        try await casTakeover(key, newRecord: newRecord, staleBefore: staleBefore, ttl: nil)
    }

    /// `true` when the store answers (`PING`).
    public func ping() async -> Bool { await healthCheck() }

    /// The first `SCAN` page of `pattern` under the prefix.
    public func scan(_ pattern: String = "*", count: Int = 100) async throws -> (cursor: UInt64, keys: [String]) {
        try await scan(pattern, count: count, cursor: 0)
    }

    /// Reads many keys as ``JSONValue``s (`MGET`).
    public func mget(_ keys: [String]) async throws -> [String: JSONValue] { try await mget(keys, as: JSONValue.self) }

    /// Stores many values without TTL (`MSET`).
    public func mset<T: Encodable>(_ values: [String: T]) async throws { try await mset(values, ttl: nil) }

    /// Reads one hash field as a ``JSONValue`` (`HGET`).
    public func hget(_ name: String, field: String) async throws -> JSONValue? { try await hget(name, field: field, as: JSONValue.self) }

    /// Reads a hash as ``JSONValue``s (`HGETALL`).
    public func hgetall(_ name: String) async throws -> [String: JSONValue] { try await hgetall(name, as: JSONValue.self) }

    /// Appends and trims without TTL (one `EVALSHA`).
    @discardableResult
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int) async throws -> Int {
        try await pushLimit(key, value, maxLength: maxLength, ttl: nil)
    }

    /// A list's elements as ``JSONValue``s (`LRANGE`).
    public func listRange(_ key: String, start: Int = 0, end: Int = -1) async throws -> [JSONValue] {
        try await listRange(key, start: start, end: end, as: JSONValue.self)
    }

    /// Every key under the prefix (a full `SCAN`).
    public func keys() async throws -> [String] { try await keys("*") }
}

import BaldurCache

/// Drives a provider's blocking calls through ``AsyncCacheProvider``, so one
/// contract suite covers the synchronous and the async calls alike.
final class SyncDriver: AsyncCacheProvider {
    let base: any CacheProvider

    init(_ base: any CacheProvider) { self.base = base }

    var providerName: String { base.providerName }
    func get<T: Decodable>(_ key: String, as type: T.Type) async throws -> T? { try base.get(key, as: type) }
    func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws { try base.set(key, value, ttl: ttl) }
    func delete(_ key: String) async throws -> Bool { try base.delete(key) }
    func exists(_ key: String) async throws -> Bool { try base.exists(key) }
    func incr(_ key: String, by amount: Int64) async throws -> Int64 { try base.incr(key, by: amount) }
    func decr(_ key: String, by amount: Int64) async throws -> Int64 { try base.decr(key, by: amount) }
    func expire(_ key: String, ttl: Duration) async throws -> Bool { try base.expire(key, ttl: ttl) }
    func lifetime(of key: String) async throws -> KeyLifetime { try base.lifetime(of: key) }
    func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) async throws -> Bool { try base.setnx(key, value, ttl: ttl) }
    func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?) async throws -> Bool {
        try base.casDictField(key, field: field, expected: expected, newValue: newValue, ttl: ttl)
    }
    func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) async throws -> Bool {
        try base.casTakeover(key, newRecord: newRecord, staleBefore: staleBefore, ttl: ttl)
    }
    func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) async throws -> Bool {
        try base.setIfFenced(key, value, fencingToken: fencingToken)
    }
    func getLock(_ name: String, timeout: Duration, blockingTimeout: Duration?) -> DistributedLock {
        base.getLock(name, timeout: timeout, blockingTimeout: blockingTimeout)
    }
    func mget<T: Decodable>(_ keys: [String], as type: T.Type) async throws -> [String: T] { try base.mget(keys, as: type) }
    func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) async throws { try base.mset(values, ttl: ttl) }
    func mdelete(_ keys: [String]) async throws -> Int { try base.mdelete(keys) }
    func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) async throws -> T? { try base.hget(name, field: field, as: type) }
    func hset<T: Encodable>(_ name: String, field: String, _ value: T) async throws { try base.hset(name, field: field, value) }
    func hgetall<T: Decodable>(_ name: String, as type: T.Type) async throws -> [String: T] { try base.hgetall(name, as: type) }
    func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) async throws -> Int {
        try base.pushLimit(key, value, maxLength: maxLength, ttl: ttl)
    }
    func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) async throws -> [T] {
        try base.listRange(key, start: start, end: end, as: type)
    }
    func healthCheck() async -> Bool { base.healthCheck() }
    func flushAll() async throws -> Int { try base.flushAll() }
    func keys(_ pattern: String) async throws -> [String] { try base.keys(pattern) }
    func scan(_ pattern: String, count: Int, cursor: UInt64) async throws -> (cursor: UInt64, keys: [String]) {
        try base.scan(pattern, count: count, cursor: cursor)
    }
    func close() async { base.close() }
    func reconnect() async throws { try base.reconnect() }
}

import Logging
import Dispatch
import Synchronization

/// A ``CacheProvider`` in process memory with the same contract as
/// ``RedisCacheAdapter``: the same JSON bytes, TTLs, compare-and-set rules,
/// `pushLimit`, key prefixes, errors (a counter over a non-integer fails with
/// the server's own message) and locks (in-process). For services' unit tests.
///
/// ```swift
/// let cache: any CacheProvider = InMemoryCacheAdapter()
/// try cache.set("k", 42)
/// ```
public final class InMemoryCacheAdapter: CacheProvider {
    /// `"memory"`.
    public let providerName = "memory"
    /// How keys become storage keys.
    public let keyPrefix: KeyPrefix
    /// The TTL `set(_:_:ttl:)` uses when given none.
    public let defaultTTL: Duration?
    /// How `Codable` values other than ``JSONValue`` are encoded and decoded.
    public let jsonCoders: JSONCoders

    private let state = PlainMutex(State())

    private struct State {
        var entries: [String: Entry] = [:]
        /// Lock waiters per key, longest-waiting first.
        var lockWaiters: [String: [ReleaseSignal]] = [:]
        var closed = false
    }

    fileprivate struct Entry {
        enum Value {
            case string([UInt8])
            case hash([String: [UInt8]])
            case list([[UInt8]])
        }
        var value: Value
        var expiresAt: ContinuousClock.Instant?
    }

    private static let wrongType = RedisError(.server, "WRONGTYPE Operation against a key holding the wrong kind of value")

    /// Creates an empty store.
    ///
    /// - Parameters:
    ///   - keyPrefix: `nil` dynamic, `""` none, anything else literal (see ``KeyPrefix``).
    ///   - defaultTTL: The TTL of `set` calls that pass none.
    ///   - jsonCoders: The `JSONEncoder` and `JSONDecoder` for `Codable` values
    ///     other than ``JSONValue``, as ``RedisCacheAdapter`` takes them.
    public init(keyPrefix: String? = nil, defaultTTL: Duration? = nil, jsonCoders: JSONCoders = .baldur) throws(RedisError) {
        if let defaultTTL { _ = try CacheArguments.validTTL(defaultTTL) }
        self.keyPrefix = KeyPrefix(keyPrefix)
        self.defaultTTL = defaultTTL
        self.jsonCoders = jsonCoders
    }

    // MARK: - Values

    /// The in-memory `get`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func get<T: Decodable>(_ key: String, as type: T.Type) throws(RedisError) -> T? {
        guard let bytes = try withEntries({ entries throws(RedisError) in try Self.string(&entries, storageKey(key)) }) else { return nil }
        return try jsonCoders.decode(bytes, as: T.self, key: key)
    }

    /// The in-memory `set`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) {
        let bytes = try jsonCoders.encode(value)
        let expiry = try Self.expiry(ttl ?? defaultTTL)
        let full = storageKey(key)
        try withEntries { entries in entries[full] = Entry(value: .string(bytes), expiresAt: expiry) }
    }

    /// The in-memory `delete`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func delete(_ key: String) throws(RedisError) -> Bool {
        let full = storageKey(key)
        return try withEntries { entries in Self.live(&entries, full) != nil && entries.removeValue(forKey: full) != nil }
    }

    /// The in-memory `exists`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func exists(_ key: String) throws(RedisError) -> Bool {
        let full = storageKey(key)
        return try withEntries { entries in Self.live(&entries, full) != nil }
    }

    // MARK: - Counters and TTLs

    /// The in-memory `incr`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func incr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        let full = storageKey(key)
        return try withEntries { entries throws(RedisError) in
            let current = try Self.string(&entries, full)
            let text = current.map { String(decoding: $0, as: UTF8.self) } ?? "0"
            guard let value = Int64(text) else {
                throw RedisError(.server, "ERR value is not an integer or out of range")
            }
            let (sum, overflow) = value.addingReportingOverflow(amount)
            guard !overflow else { throw RedisError(.server, "ERR increment or decrement would overflow") }
            let expiry = entries[full]?.expiresAt
            entries[full] = Entry(value: .string(Array(String(sum).utf8)), expiresAt: expiry)
            return sum
        }
    }

    /// The in-memory `decr`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func decr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        guard amount != .min else { throw RedisError(.server, "ERR decrement would overflow") }
        return try incr(key, by: -amount)
    }

    /// The in-memory `expire`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func expire(_ key: String, ttl: Duration) throws(RedisError) -> Bool {
        let expiry = try Self.expiry(ttl)
        let full = storageKey(key)
        return try withEntries { entries in
            guard Self.live(&entries, full) != nil else { return false }
            entries[full]?.expiresAt = expiry
            return true
        }
    }

    /// The in-memory `lifetime(of:)`, with the Redis adapter's semantics
    /// (see ``CacheProvider``), to the millisecond (rounded up).
    public func lifetime(of key: String) throws(RedisError) -> KeyLifetime {
        let full = storageKey(key)
        return try withEntries { entries in
            guard let entry = Self.live(&entries, full) else { return .missing }
            guard let expiresAt = entry.expiresAt else { return .persistent }
            return .expires(in: .milliseconds(ContinuousClock.now.duration(to: expiresAt).wholeMillisecondsRoundedUp))
        }
    }

    /// The in-memory `setnx`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> Bool {
        let bytes = try jsonCoders.encode(value)
        let expiry = try Self.expiry(ttl)
        let full = storageKey(key)
        return try withEntries { entries in
            guard Self.live(&entries, full) == nil else { return false }
            entries[full] = Entry(value: .string(bytes), expiresAt: expiry)
            return true
        }
    }

    // MARK: - Compare-and-set

    /// The in-memory `casDictField`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func casDictField<T: Encodable>(
        _ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?
    ) throws(RedisError) -> Bool {
        let expected = try CacheArguments.validExpected(expected)
        return try replaceRecord(key, with: newValue, ttl: ttl) { record in
            let current = record[field]
            switch (expected, current) {
            case (.null, nil), (.null, .null?): return true
            case (.int, _?), (.double, _?):
                guard let want = expected.doubleValue, let have = current?.doubleValue else { return false }
                return want == have
            default: return current == expected
            }
        }
    }

    /// The in-memory `casTakeover`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func casTakeover<T: Encodable>(
        _ key: String, newRecord: T, staleBefore: Double, ttl: Duration?
    ) throws(RedisError) -> Bool {
        _ = try CacheArguments.number(staleBefore)
        return try replaceRecord(key, with: newRecord, ttl: ttl) { record in
            switch record["status"] {
            case .string("failed")?: return true
            case .string("executing")?:
                let startedAt = record["started_at"]?.doubleValue ?? record["started_at"]?.stringValue.flatMap(Double.init)
                return startedAt.map { $0 < staleBefore } ?? false
            default: return false
            }
        }
    }

    /// The in-memory `setIfFenced`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) throws(RedisError) -> Bool {
        let bytes = try jsonCoders.encode(value)
        let full = storageKey(key)
        return try withEntries { entries throws(RedisError) in
            let seenKey = ClusterSlot.companion(of: full, suffix: ":fence-seen")
            let highest = try Self.string(&entries, seenKey).flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
            guard fencingToken >= highest else { return false }
            entries[seenKey] = Entry(value: .string(Array(String(fencingToken).utf8)), expiresAt: nil)
            entries[full] = Entry(value: .string(bytes), expiresAt: nil)
            return true
        }
    }

    // MARK: - Locks

    /// The in-memory `getLock`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func getLock(_ name: String, timeout: Duration, blockingTimeout: Duration?) -> DistributedLock {
        DistributedLock(key: keyPrefix.resolve() + name, store: MemoryLockStore(cache: self), timeout: timeout, blockingTimeout: blockingTimeout)
    }

    // MARK: - Bulk

    /// The in-memory `mget`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func mget<T: Decodable>(_ keys: [String], as type: T.Type) throws(RedisError) -> [String: T] {
        let prefix = keyPrefix.resolve()
        let found = try withEntries { entries throws(RedisError) in
            var found: [(String, [UInt8])] = []
            for key in keys {
                if case .string(let bytes)? = Self.live(&entries, prefix + key)?.value { found.append((key, bytes)) }
            }
            return found
        }
        var result: [String: T] = [:]
        for (key, bytes) in found { result[key] = try jsonCoders.decode(bytes, as: T.self, key: key) }
        return result
    }

    /// The in-memory `mset`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) throws(RedisError) {
        let prefix = keyPrefix.resolve()
        let expiry = try Self.expiry(ttl)
        var encoded: [(String, [UInt8])] = []
        for (key, value) in values { encoded.append((prefix + key, try jsonCoders.encode(value))) }
        try withEntries { entries in
            for (key, bytes) in encoded { entries[key] = Entry(value: .string(bytes), expiresAt: expiry) }
        }
    }

    /// The in-memory `mdelete`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func mdelete(_ keys: [String]) throws(RedisError) -> Int {
        let prefix = keyPrefix.resolve()
        return try withEntries { entries in
            var deleted = 0
            for key in Set(keys) where Self.live(&entries, prefix + key) != nil {
                entries.removeValue(forKey: prefix + key)
                deleted += 1
            }
            return deleted
        }
    }

    // MARK: - Hashes

    /// The in-memory `hget`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) throws(RedisError) -> T? {
        let full = storageKey(name)
        let bytes = try withEntries { entries throws(RedisError) in try Self.hash(&entries, full)?[field] }
        return try bytes.map { (bytes) throws(RedisError) in try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]") }
    }

    /// The in-memory `hset`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func hset<T: Encodable>(_ name: String, field: String, _ value: T) throws(RedisError) {
        let bytes = try jsonCoders.encode(value)
        let full = storageKey(name)
        try withEntries { entries throws(RedisError) in
            var fields = try Self.hash(&entries, full) ?? [:]
            fields[field] = bytes
            entries[full] = Entry(value: .hash(fields), expiresAt: entries[full]?.expiresAt)
        }
    }

    /// The in-memory `hgetall`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func hgetall<T: Decodable>(_ name: String, as type: T.Type) throws(RedisError) -> [String: T] {
        let full = storageKey(name)
        let fields = try withEntries { entries throws(RedisError) in try Self.hash(&entries, full) ?? [:] }
        var result: [String: T] = [:]
        for (field, bytes) in fields { result[field] = try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]") }
        return result
    }

    // MARK: - Lists

    /// The in-memory `pushLimit`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) throws(RedisError) -> Int {
        let bytes = try jsonCoders.encode(value)
        let maxLength = try CacheArguments.validMaxLength(maxLength)
        let expiry = try Self.expiry(ttl)
        let full = storageKey(key)
        return try withEntries { entries throws(RedisError) in
            var items = try Self.list(&entries, full) ?? []
            items.append(bytes)
            let length = items.count
            if items.count > maxLength { items.removeFirst(items.count - maxLength) }
            entries[full] = Entry(value: .list(items), expiresAt: expiry ?? entries[full]?.expiresAt)
            return length
        }
    }

    /// The in-memory `listRange`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) throws(RedisError) -> [T] {
        let full = storageKey(key)
        let items = try withEntries { entries throws(RedisError) in try Self.list(&entries, full) ?? [] }
        // LRANGE's index rules: negatives count from the end, out-of-range ends are clamped.
        let count = items.count
        let first = max(start < 0 ? count + start : start, 0)
        let last = min(end < 0 ? count + end : end, count - 1)
        guard first <= last, first < count else { return [] }
        var result: [T] = []
        for index in first...last { result.append(try jsonCoders.decode(items[index], as: T.self, key: "\(key)[\(index)]")) }
        return result
    }

    // MARK: - Health and keys

    /// The in-memory `healthCheck`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func healthCheck() -> Bool { !state.withLock { $0.closed } }

    /// The in-memory `flushAll`, with the Redis adapter's semantics (see ``CacheProvider``).
    @discardableResult
    public func flushAll() throws(RedisError) -> Int {
        let prefix = keyPrefix.resolve()
        return try withEntries { entries in
            let doomed = entries.keys.filter { $0.hasPrefix(prefix) }
            for key in doomed { entries.removeValue(forKey: key) }
            return doomed.count
        }
    }

    /// The in-memory `keys`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func keys(_ pattern: String) throws(RedisError) -> [String] {
        try scan(pattern, count: Int.max, cursor: 0).keys
    }

    /// The in-memory `scan`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func scan(_ pattern: String, count: Int, cursor: UInt64) throws(RedisError) -> (cursor: UInt64, keys: [String]) {
        guard count > 0 else { throw RedisError(.invalidArgument, "scan count must be at least 1, not \(count)") }
        let prefix = keyPrefix.resolve()
        let all = try withEntries { entries in
            let now = ContinuousClock.now
            return entries.filter { $0.value.expiresAt.map { $0 > now } ?? true }.keys.sorted()
        }
        let start = Int(min(cursor, UInt64(all.count)))
        let end = count >= all.count - start ? all.count : start + count
        let page = all[start..<end].filter { $0.hasPrefix(prefix) && Glob.matches(pattern, String($0.dropFirst(prefix.count))) }
        return (end >= all.count ? 0 : UInt64(end), page.map { String($0.dropFirst(prefix.count)) })
    }

    /// The in-memory `close`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func close() { state.withLock { $0.closed = true } }

    /// The in-memory `reconnect`, with the Redis adapter's semantics (see ``CacheProvider``).
    public func reconnect() throws(RedisError) {
        try withEntries { _ in }
    }

    // MARK: - Internals

    private func storageKey(_ key: String) -> String { keyPrefix.resolve() + key }

    private func withEntries<R>(_ body: (inout [String: Entry]) throws(RedisError) -> R) throws(RedisError) -> R {
        try lockOperation { entries, _ throws(RedisError) in try body(&entries) }
    }

    /// The entry at `key` unless it expired (expired entries are removed on sight).
    private static func live(_ entries: inout [String: Entry], _ key: String) -> Entry? {
        guard let entry = entries[key] else { return nil }
        if let expiresAt = entry.expiresAt, expiresAt <= .now {
            entries.removeValue(forKey: key)
            return nil
        }
        return entry
    }

    private static func string(_ entries: inout [String: Entry], _ key: String) throws(RedisError) -> [UInt8]? {
        switch live(&entries, key)?.value {
        case nil: return nil
        case .string(let bytes)?: return bytes
        default: throw wrongType
        }
    }

    private static func hash(_ entries: inout [String: Entry], _ key: String) throws(RedisError) -> [String: [UInt8]]? {
        switch live(&entries, key)?.value {
        case nil: return nil
        case .hash(let fields)?: return fields
        default: throw wrongType
        }
    }

    private static func list(_ entries: inout [String: Entry], _ key: String) throws(RedisError) -> [[UInt8]]? {
        switch live(&entries, key)?.value {
        case nil: return nil
        case .list(let items)?: return items
        default: throw wrongType
        }
    }

    private static func expiry(_ ttl: Duration?) throws(RedisError) -> ContinuousClock.Instant? {
        guard let ttl else { return nil }
        return .now + (try CacheArguments.validTTL(ttl))
    }

    /// Atomically replaces the JSON object at `key` when `matches` accepts it;
    /// anything that is not a JSON object is no match, as in the Lua scripts.
    private func replaceRecord<T: Encodable>(
        _ key: String, with newValue: T, ttl: Duration?, where matches: (JSONValue) -> Bool
    ) throws(RedisError) -> Bool {
        let bytes = try jsonCoders.encode(newValue)
        let ttlMilliseconds = try CacheArguments.ttlMilliseconds(ttl)
        let full = storageKey(key)
        return try withEntries { entries throws(RedisError) in
            guard case .string(let stored)? = Self.live(&entries, full)?.value,
                  let record = try? JSONReader.parse(stored), case .object = record, matches(record)
            else { return false }
            let expiry = ttlMilliseconds > 0 ? ContinuousClock.now + .milliseconds(ttlMilliseconds) : nil
            entries[full] = Entry(value: .string(bytes), expiresAt: expiry)
            return true
        }
    }

    fileprivate func lockOperation<R>(
        _ body: (inout [String: Entry], inout [String: [ReleaseSignal]]) throws(RedisError) -> R
    ) throws(RedisError) -> R {
        try state.withLock { state throws(RedisError) -> R in
            guard !state.closed else { throw RedisError(.closed, "the in-memory cache was closed") }
            return try body(&state.entries, &state.lockWaiters)
        }
    }

    fileprivate static func lockOwner(_ entries: inout [String: Entry], _ key: String) -> String? {
        guard case .string(let bytes)? = live(&entries, key)?.value else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    fileprivate static func setLock(_ entries: inout [String: Entry], _ key: String, owner: String, expiresAt: ContinuousClock.Instant?) {
        entries[key] = Entry(value: .string(Array(owner.utf8)), expiresAt: expiresAt)
    }
}

/// In-process locks over the in-memory store, with Redis' semantics.
private struct MemoryLockStore: LockStore {
    /// Never reached over a network: nothing to ride out.
    var outageLimit: Duration { .seconds(30) }
    var logger: Logger? { nil }
    let cache: InMemoryCacheAdapter

    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool {
        try tryAcquireFenced(key: key, owner: owner, ttl: ttl, fenced: false) != nil
    }

    func tryAcquireFenced(key: String, owner: String, ttl: Duration) throws(RedisError) -> Int64? {
        try tryAcquireFenced(key: key, owner: owner, ttl: ttl, fenced: true)
    }

    private func tryAcquireFenced(key: String, owner: String, ttl: Duration, fenced: Bool) throws(RedisError) -> Int64? {
        try cache.lockOperation { entries, _ in
            guard InMemoryCacheAdapter.lockOwner(&entries, key) == nil else { return nil }
            InMemoryCacheAdapter.setLock(&entries, key, owner: owner, expiresAt: .now + ttl)
            guard fenced else { return 0 }
            let fenceKey = ClusterSlot.companion(of: key, suffix: ":fence")
            let current = InMemoryCacheAdapter.lockOwner(&entries, fenceKey).flatMap { Int64($0) } ?? 0
            InMemoryCacheAdapter.setLock(&entries, fenceKey, owner: String(current + 1), expiresAt: nil)
            return current + 1
        }
    }

    func release(key: String, owner: String) throws(RedisError) -> LockReleaseOutcome {
        try cache.lockOperation { entries, waiters in
            switch InMemoryCacheAdapter.lockOwner(&entries, key) {
            case nil: return .absent
            case owner: break
            default: return .heldByAnother
            }
            entries.removeValue(forKey: key)
            // Wake the longest waiter, as the Redis signal list does.
            if var queue = waiters[key], !queue.isEmpty {
                queue.removeFirst().signal()
                waiters[key] = queue.isEmpty ? nil : queue
            }
            return .released
        }
    }

    var telemetry: Telemetry { .disabled }

    func currentFencingToken(key: String) throws(RedisError) -> Int64 {
        try cache.lockOperation { entries, _ in InMemoryCacheAdapter.lockOwner(&entries, ClusterSlot.companion(of: key, suffix: ":fence")).flatMap { Int64($0) } ?? 0 }
    }

    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool {
        try cache.lockOperation { entries, _ in
            guard InMemoryCacheAdapter.lockOwner(&entries, key) == owner, let entry = entries[key] else { return false }
            let now = ContinuousClock.now
            let base = adding ? max(entry.expiresAt ?? now, now) : now
            InMemoryCacheAdapter.setLock(&entries, key, owner: owner, expiresAt: base + duration)
            return true
        }
    }

    func owner(key: String) throws(RedisError) -> String? {
        try cache.lockOperation { entries, _ in InMemoryCacheAdapter.lockOwner(&entries, key) }
    }

    func waitForRelease(key: String, timeout: Duration) throws(RedisError) {
        let signal = try enqueueWaiter(key)
        if !signal.wait(timeout: timeout) { try leave(key, signal) }
    }

    func waitForRelease(key: String, timeout: Duration) async throws {
        let signal = try enqueueWaiter(key)
        await signal.wait(timeout: timeout)
        // A release that picked this waiter has removed it already.
        try leave(key, signal)
    }

    // The remaining calls never wait: the synchronous ones serve async callers too.

    func tryAcquire(key: String, owner: String, ttl: Duration) async throws -> Bool {
        try syncCall { () throws(RedisError) in try tryAcquire(key: key, owner: owner, ttl: ttl) }
    }

    func tryAcquireFenced(key: String, owner: String, ttl: Duration) async throws -> Int64? {
        try syncCall { () throws(RedisError) in try tryAcquireFenced(key: key, owner: owner, ttl: ttl) }
    }

    func release(key: String, owner: String) async throws -> LockReleaseOutcome {
        try syncCall { () throws(RedisError) in try release(key: key, owner: owner) }
    }

    func extend(key: String, owner: String, by duration: Duration, adding: Bool) async throws -> Bool {
        try syncCall { () throws(RedisError) in try extend(key: key, owner: owner, by: duration, adding: adding) }
    }

    func owner(key: String) async throws -> String? {
        try syncCall { () throws(RedisError) in try owner(key: key) }
    }

    func currentFencingToken(key: String) async throws -> Int64 {
        try syncCall { () throws(RedisError) in try currentFencingToken(key: key) }
    }

    private func enqueueWaiter(_ key: String) throws(RedisError) -> ReleaseSignal {
        let signal = ReleaseSignal()
        try cache.lockOperation { _, waiters in waiters[key, default: []].append(signal) }
        return signal
    }

    /// Leaves the queue; a release that picked this waiter meanwhile has already signalled it.
    private func leave(_ key: String, _ signal: ReleaseSignal) throws(RedisError) {
        try cache.lockOperation { _, waiters in
            waiters[key]?.removeAll { $0 === signal }
            if waiters[key]?.isEmpty == true { waiters[key] = nil }
        }
    }
}

/// Runs a synchronous call from `async` code: in a closure, so the call
/// resolves to the synchronous overload of the same name.
@inline(__always)
func syncCall<R>(_ body: () throws(RedisError) -> R) throws(RedisError) -> R {
    try body()
}

/// Redis' glob rules (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`), for `keys` and `scan`.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        matches(Array(pattern.unicodeScalars), 0, Array(text.unicodeScalars), 0)
    }

    private static func matches(_ p: [Unicode.Scalar], _ pi: Int, _ t: [Unicode.Scalar], _ ti: Int) -> Bool {
        var pi = pi, ti = ti
        while pi < p.count {
            switch p[pi] {
            case "*":
                while pi < p.count, p[pi] == "*" { pi += 1 }
                if pi == p.count { return true }
                for start in ti...t.count where matches(p, pi, t, start) { return true }
                return false
            case "?":
                guard ti < t.count else { return false }
                pi += 1; ti += 1
            case "[":
                guard ti < t.count else { return false }
                var cursor = pi + 1
                let negate = cursor < p.count && p[cursor] == "^"
                if negate { cursor += 1 }
                var matched = false
                while cursor < p.count, p[cursor] != "]" {
                    if p[cursor] == "\\", cursor + 1 < p.count {
                        cursor += 1
                        if p[cursor] == t[ti] { matched = true }
                    } else if cursor + 2 < p.count, p[cursor + 1] == "-", p[cursor + 2] != "]" {
                        let (low, high) = (min(p[cursor], p[cursor + 2]), max(p[cursor], p[cursor + 2]))
                        if low <= t[ti], t[ti] <= high { matched = true }
                        cursor += 2
                    } else if p[cursor] == t[ti] {
                        matched = true
                    }
                    cursor += 1
                }
                guard matched != negate else { return false }
                pi = min(cursor + 1, p.count); ti += 1
            case "\\" where pi + 1 < p.count:
                guard ti < t.count, p[pi + 1] == t[ti] else { return false }
                pi += 2; ti += 1
            default:
                guard ti < t.count, p[pi] == t[ti] else { return false }
                pi += 1; ti += 1
            }
        }
        return ti == t.count
    }
}

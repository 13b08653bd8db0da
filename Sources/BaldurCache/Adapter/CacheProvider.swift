/// The Baldur cache-provider contract (Python: `CacheProviderInterface`).
///
/// Two providers implement it: ``RedisCacheAdapter`` (production) and
/// ``InMemoryCacheAdapter`` (services' unit tests). Values are any `Codable`
/// type or ``JSONValue``, stored as compact UTF-8 JSON.
///
/// ## Errors
/// Every method throws ``RedisError``; nothing fails silently. Python's
/// adapter swallows most backend errors and returns a neutral value (`None`,
/// `False`, `0`, `[]`); to get that fail-open behaviour, use `try?`:
/// ```swift
/// let cached = (try? cache.get("profile:42")) ?? nil   // nil on a miss or an outage
/// ```
/// The reference itself lets `setnx`, `casTakeover` and lock release fail
/// loudly, because treating an outage as "someone else holds it" would be
/// wrong; keep those un-`try?`'d.
///
/// ## TTLs
/// TTLs are `Duration`s from one second to 100 years. Whole seconds go out
/// as `EX`, fractional ones as `PX` (exact); zero, negative, sub-second and
/// longer TTLs throw ``RedisError/Code/invalidArgument`` before anything is sent.
public protocol CacheProvider: CacheLockProvider {

    /// Reads `key` and decodes it as `T` (`GET`). `nil` when the key is missing.
    ///
    /// - Throws: ``RedisError/Code/decoding`` naming the key when the stored
    ///   value is not JSON or not a `T`.
    func get<T: Decodable>(_ key: String, as type: T.Type) throws(RedisError) -> T?

    /// Stores `value` as JSON (`SET key json [EX|PX ttl]`). Without `ttl`, the
    /// provider's `defaultTTL` applies; without either, the key does not expire.
    func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError)

    /// Deletes `key` (`DEL`). `true` when it existed.
    @discardableResult
    func delete(_ key: String) throws(RedisError) -> Bool

    /// `true` when `key` exists (`EXISTS`).
    func exists(_ key: String) throws(RedisError) -> Bool

    /// Adds `amount` to the integer at `key`, creating it at 0 (`INCRBY`). Returns the new value.
    @discardableResult
    func incr(_ key: String, by amount: Int64) throws(RedisError) -> Int64

    /// Subtracts `amount` from the integer at `key`, creating it at 0 (`DECRBY`). Returns the new value.
    @discardableResult
    func decr(_ key: String, by amount: Int64) throws(RedisError) -> Int64

    /// Sets `key`'s time to live (`EXPIRE`, or `PEXPIRE` for fractional seconds).
    /// `true` when the key exists.
    @discardableResult
    func expire(_ key: String, ttl: Duration) throws(RedisError) -> Bool

    /// How long `key` has left (`PTTL`): ``KeyLifetime/missing``,
    /// ``KeyLifetime/persistent``, or the time to the millisecond.
    func lifetime(of key: String) throws(RedisError) -> KeyLifetime

    /// Stores `value` only if `key` does not exist, with the TTL in the same
    /// atomic command (`SET key json NX [EX|PX ttl]`). `true` when stored.
    func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> Bool

    /// Replaces the record at `key` with `newValue` iff it is a JSON object
    /// whose `field` equals `expected` (one Lua script; `PX` TTL).
    ///
    /// Unlike the Python script, which compares strings only, `expected` is
    /// compared by JSON type: strings, numbers (numerically), booleans, and
    /// `null`, which also matches a missing field. A stored value that is not
    /// JSON, or not an object, is "no match" (`false`), never an error.
    ///
    /// - Throws: ``RedisError/Code/invalidArgument`` when `expected` is an array or object.
    func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?) throws(RedisError) -> Bool

    /// Replaces the record at `key` with `newRecord` iff its `status` is
    /// `"failed"`, or `"executing"` with `started_at < staleBefore` (one Lua
    /// script; `PX` TTL). The reference lets this fail loudly: do not `try?` it.
    func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) throws(RedisError) -> Bool

    /// Stores `value` at `key` iff `fencingToken` is not lower than any token
    /// used on `key` before (one Lua script; the highest token is kept at
    /// `{key}:fence-seen`, in the key's cluster slot). A holder that paused
    /// past its lease and comes back with an old token is refused: `false`.
    ///
    /// ```swift
    /// let lock = cache.getLock("report")
    /// if let token = try lock.acquireWithFencingToken() {
    ///     let accepted = try cache.setIfFenced("report:latest", report, fencingToken: token)
    /// }
    /// ```
    func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) throws(RedisError) -> Bool


    /// Reads many keys in one round trip (`MGET`). Missing keys are omitted.
    func mget<T: Decodable>(_ keys: [String], as type: T.Type) throws(RedisError) -> [String: T]

    /// Stores many values in one round trip (`MSET`, or pipelined `SET ... EX` with a TTL).
    func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) throws(RedisError)

    /// Deletes many keys in one round trip (`DEL k1 k2 ...`). Returns how many existed.
    @discardableResult
    func mdelete(_ keys: [String]) throws(RedisError) -> Int

    /// Reads one field of a hash and decodes it (`HGET`). Field names are raw; values JSON.
    func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) throws(RedisError) -> T?

    /// Stores one field of a hash (`HSET`).
    func hset<T: Encodable>(_ name: String, field: String, _ value: T) throws(RedisError)

    /// Reads every field of a hash (`HGETALL`).
    func hgetall<T: Decodable>(_ name: String, as type: T.Type) throws(RedisError) -> [String: T]

    /// Appends `value` to the list at `key`, keeps the last `maxLength`
    /// elements and renews the TTL, atomically (`RPUSH` + `LTRIM` + `PEXPIRE`
    /// in one Lua script). Returns the length after the push, before the trim.
    ///
    /// - Throws: ``RedisError/Code/invalidArgument`` when `maxLength <= 0`.
    @discardableResult
    func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) throws(RedisError) -> Int

    /// Elements `start...end` of the list at `key`, negative indexes from the end (`LRANGE`).
    func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) throws(RedisError) -> [T]

    /// `true` when the backend answers (`PING`). Never throws.
    func healthCheck() -> Bool

    /// Deletes every key under this provider's prefix (`SCAN` + `DEL`, never
    /// `FLUSHDB`). Returns how many keys were deleted. With an empty prefix
    /// that is every key of the database.
    @discardableResult
    func flushAll() throws(RedisError) -> Int

    /// Every key matching the glob `pattern`, without the prefix (a full `SCAN`, not `KEYS`).
    func keys(_ pattern: String) throws(RedisError) -> [String]

    /// One page of keys matching `pattern`, without the prefix (`SCAN cursor MATCH COUNT`).
    /// A returned cursor of 0 means the iteration is complete.
    func scan(_ pattern: String, count: Int, cursor: UInt64) throws(RedisError) -> (cursor: UInt64, keys: [String])

    /// Closes the backend's connections. Idempotent; later calls throw ``RedisError/Code/closed``.
    func close()

    /// Drops every connection and proves the backend is back (`PING`).
    func reconnect() throws(RedisError)
}

extension CacheProvider {
    /// Seconds left for `key` (`PTTL`, rounded to the second as `TTL`
    /// rounds): `nil` when it has no expiry, `-2` when it does not exist.
    @available(*, deprecated, message: "use lifetime(of:), which tells a missing key from a persistent one and keeps the milliseconds")
    public func ttl(_ key: String) throws(RedisError) -> Int? { try lifetime(of: key).legacySeconds }

    /// Reads `key` as a ``JSONValue`` (`GET`).
    public func get(_ key: String) throws(RedisError) -> JSONValue? { try get(key, as: JSONValue.self) }

    /// Stores `value` with the default TTL (`SET`).
    public func set<T: Encodable>(_ key: String, _ value: T) throws(RedisError) { try set(key, value, ttl: nil) }

    /// Adds 1 (`INCRBY key 1`).
    @discardableResult
    public func incr(_ key: String) throws(RedisError) -> Int64 { try incr(key, by: 1) }

    /// Subtracts 1 (`DECRBY key 1`).
    @discardableResult
    public func decr(_ key: String) throws(RedisError) -> Int64 { try decr(key, by: 1) }

    /// Stores `value` if `key` is absent, without a TTL (`SET key json NX`).
    public func setnx<T: Encodable>(_ key: String, _ value: T) throws(RedisError) -> Bool { try setnx(key, value, ttl: nil) }

    /// `casDictField(_:field:expected:newValue:ttl:)` without a TTL.
    public func casDictField<T: Encodable>(_ key: String, field: String, expected: JSONValue, newValue: T) throws(RedisError) -> Bool {
        try casDictField(key, field: field, expected: expected, newValue: newValue, ttl: nil)
    }

    /// `casTakeover(_:newRecord:staleBefore:ttl:)` without a TTL.
    public func casTakeover<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double) throws(RedisError) -> Bool {
        try casTakeover(key, newRecord: newRecord, staleBefore: staleBefore, ttl: nil)
    }

    /// `mget(_:as:)` as ``JSONValue``s.
    public func mget(_ keys: [String]) throws(RedisError) -> [String: JSONValue] { try mget(keys, as: JSONValue.self) }

    /// `mset(_:ttl:)` without a TTL.
    public func mset<T: Encodable>(_ values: [String: T]) throws(RedisError) { try mset(values, ttl: nil) }

    /// `hget(_:field:as:)` as a ``JSONValue``.
    public func hget(_ name: String, field: String) throws(RedisError) -> JSONValue? { try hget(name, field: field, as: JSONValue.self) }

    /// `hgetall(_:as:)` as ``JSONValue``s.
    public func hgetall(_ name: String) throws(RedisError) -> [String: JSONValue] { try hgetall(name, as: JSONValue.self) }

    /// `pushLimit(_:_:maxLength:ttl:)` without a TTL.
    @discardableResult
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int) throws(RedisError) -> Int {
        try pushLimit(key, value, maxLength: maxLength, ttl: nil)
    }

    /// `listRange(_:start:end:as:)` as ``JSONValue``s.
    public func listRange(_ key: String, start: Int = 0, end: Int = -1) throws(RedisError) -> [JSONValue] {
        try listRange(key, start: start, end: end, as: JSONValue.self)
    }

    /// Same as `healthCheck()` (the reference's `ping`).
    public func ping() -> Bool { healthCheck() }

    /// Every key, without the prefix.
    public func keys() throws(RedisError) -> [String] { try keys("*") }

    /// The first page of keys matching `pattern` (default `*`, 100 per page).
    public func scan(_ pattern: String = "*", count: Int = 100) throws(RedisError) -> (cursor: UInt64, keys: [String]) {
        try scan(pattern, count: count, cursor: 0)
    }
}

/// Checks shared by both providers, so they refuse the same inputs the same way.
enum CacheArguments {
    /// A TTL's `SET` arguments: `EX seconds` for whole seconds, `PX ms` otherwise.
    static func ttlArguments(_ ttl: Duration) throws(RedisError) -> [RedisArgument] {
        let checked = try validTTL(ttl)
        let (seconds, attoseconds) = checked.components
        return attoseconds == 0 ? ["EX", RedisArgument(seconds)] : ["PX", RedisArgument(checked.wholeMillisecondsRoundedUp)]
    }

    /// ``ttlArguments(_:)``, or none for no TTL.
    static func ttlArguments(_ ttl: Duration?) throws(RedisError) -> [RedisArgument] {
        guard let ttl else { return [] }
        return try ttlArguments(ttl)
    }

    /// `SET key value [NX] [EX seconds | PX ms]` with `expiry` from
    /// ``ttlArguments(_:)``, built as one array (the hot path of `set` and of
    /// `mset` with a TTL).
    static func setCommand(_ key: RedisArgument, _ value: [UInt8], onlyIfAbsent: Bool = false, expiry: [RedisArgument]) -> [RedisArgument] {
        if !onlyIfAbsent && expiry.count == 2 { return ["SET", key, .bytes(value), expiry[0], expiry[1]] }
        var command: [RedisArgument] = onlyIfAbsent ? ["SET", key, .bytes(value), "NX"] : ["SET", key, .bytes(value)]
        if !expiry.isEmpty { command += expiry }
        return command
    }

    /// Rejects zero, negative and sub-second TTLs, and TTLs over
    /// ``Swift/Duration/longestAccepted`` (100 years).
    static func validTTL(_ ttl: Duration) throws(RedisError) -> Duration {
        try ttl.checked("a TTL", in: .seconds(1)...Duration.longestAccepted)
    }

    /// A CAS TTL in milliseconds, or 0 for none.
    static func ttlMilliseconds(_ ttl: Duration?) throws(RedisError) -> Int64 {
        guard let ttl else { return 0 }
        return try validTTL(ttl).wholeMillisecondsRoundedUp
    }

    static func validMaxLength(_ maxLength: Int) throws(RedisError) -> Int {
        guard maxLength > 0 else {
            throw RedisError(.invalidArgument, "maxLength must be at least 1, not \(maxLength)")
        }
        return maxLength
    }

    /// The largest magnitude a number `expected` by `casDictField` may
    /// have: 2^53 - 1. The script compares numbers as Lua doubles (cjson
    /// decodes every number to one); below 2^53 every integer is exact, so
    /// no stored integer that differs can compare equal. At 2^53 and above,
    /// `9007199254740993` reads back as `9007199254740992.0` and a CAS
    /// would match a value it should not.
    static let largestExactCASNumber: Int64 = 1 << 53 - 1

    /// Rejects arrays and objects, and numbers too large to compare exactly
    /// (see ``largestExactCASNumber``).
    static func validExpected(_ expected: JSONValue) throws(RedisError) -> JSONValue {
        switch expected {
        case .array, .object:
            throw RedisError(.invalidArgument, "casDictField compares scalar fields only; expected must be a string, number, boolean or null")
        case .int(let integer) where integer.magnitude > UInt64(largestExactCASNumber):
            throw inexact("\(integer)")
        case .double(let number) where !(number.magnitude <= Double(largestExactCASNumber)):
            throw inexact("\(number)")
        default:
            return expected
        }
    }

    private static func inexact(_ number: String) -> RedisError {
        RedisError(.invalidArgument, "casDictField compares numbers exactly only up to 2^53 - 1 in magnitude; \(number) could match a different stored number, so compare it as a string field instead")
    }

    /// `staleBefore` as text Lua's `tonumber` reads back exactly.
    static func number(_ value: Double) throws(RedisError) -> String {
        guard value.isFinite else { throw RedisError(.invalidArgument, "staleBefore must be a finite number, not \(value)") }
        return value.description
    }
}

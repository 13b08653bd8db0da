import Foundation
import Logging

/// The production ``CacheProvider``: Baldur's cache contract on Redis,
/// wire-compatible with Python Baldur's `RedisCacheAdapter` (same keys, same
/// JSON bytes, same lock protocol), so Swift and Python services can share
/// one Redis.
///
/// ```swift
/// let cache = try RedisCacheAdapter(url: "redis://127.0.0.1:6379/0")
/// try cache.set("user:42", ["name": "Ada"] as JSONValue, ttl: .seconds(300))
/// let user = try cache.get("user:42")                 // JSONValue?
/// try cache.getLock("user:42:update").withLock {
///     _ = try cache.incr("user:42:version")
/// }
/// ```
///
/// Thread-safe and `Sendable`; share one per process. See ``CacheProvider``
/// for the error and TTL rules.
public final class RedisCacheAdapter: CacheProvider {
    /// `"redis"`.
    public let providerName = "redis"
    /// The pooled client underneath, for any command, `EVAL`/`EVALSHA` and pipelines.
    public let rawClient: RedisClient
    /// How keys become storage keys.
    public let keyPrefix: KeyPrefix
    /// The TTL `set(_:_:ttl:)` uses when given none.
    public let defaultTTL: Duration?
    /// How `Codable` values other than ``JSONValue`` are encoded and decoded.
    public let jsonCoders: JSONCoders
    let logger: Logger
    /// Values read, kept in memory until Redis says they changed (see ``NearCacheConfiguration``).
    let nearCache: NearCache?

    /// Creates an adapter.
    ///
    /// - Parameters:
    ///   - url: A Redis URL; `nil` reads `BALDUR_REDIS_URL` (default `redis://localhost:6379/0`).
    ///     The other `BALDUR_REDIS_*` variables apply either way.
    ///   - client: A client to use instead of making one; it wins over `url`.
    ///   - keyPrefix: `nil` dynamic (`baldur:`, namespaced, synthetic-aware), `""` none,
    ///     anything else used literally. See ``KeyPrefix``.
    ///   - defaultTTL: The TTL of `set` calls that pass none.
    ///   - commandTimeout: Overrides the reply timeout.
    ///   - socketConnectTimeout: Overrides the connect timeout.
    ///   - retryOnTimeout: Overrides whether read-only commands retry once.
    ///   - logger: Receives debug and info messages with keys and operations, and warnings for
    ///     failovers, lost locks, connect back-off and near-cache outages; never values or passwords.
    ///   - observability: Where metrics and spans go, for a client made here
    ///     (an injected `client` keeps its own).
    ///   - nearCache: Keep values read in memory, served until Redis says
    ///     they changed (`CLIENT TRACKING`); off when `nil`. See ``NearCacheConfiguration``.
    ///   - jsonCoders: The `JSONEncoder` and `JSONDecoder` for `Codable` values
    ///     other than ``JSONValue`` (which always takes Baldur's own path).
    /// - Throws: ``RedisError/Code/invalidConfiguration`` for a bad URL,
    ///   variable or near-cache bound; ``RedisError/Code/unsupported`` for a
    ///   near cache on Redis Cluster.
    public init(
        url: String? = nil,
        client: RedisClient? = nil,
        keyPrefix: String? = nil,
        defaultTTL: Duration? = nil,
        commandTimeout: Duration? = nil,
        socketConnectTimeout: Duration? = nil,
        retryOnTimeout: Bool? = nil,
        logger: Logger = Logger(label: "BaldurCache"),
        observability: RedisObservability = .global,
        nearCache: NearCacheConfiguration? = nil,
        jsonCoders: JSONCoders = .baldur
    ) throws(RedisError) {
        if let defaultTTL { _ = try CacheArguments.validTTL(defaultTTL) }
        if let client {
            rawClient = client
        } else {
            var environment = ProcessInfo.processInfo.environment
            if let url { environment["BALDUR_REDIS_URL"] = url }
            var configuration = try RedisConfiguration.fromEnvironment(environment)
            if let commandTimeout { configuration.commandTimeout = commandTimeout }
            if let socketConnectTimeout { configuration.connectTimeout = socketConnectTimeout }
            if let retryOnTimeout { configuration.retry.onTimeout = retryOnTimeout }
            rawClient = try RedisClient(configuration: configuration, logger: logger, observability: observability)
        }
        let prefix = KeyPrefix(keyPrefix)
        self.keyPrefix = prefix
        self.defaultTTL = defaultTTL
        self.jsonCoders = jsonCoders
        self.logger = logger
        let client = rawClient
        self.nearCache = try nearCache.map { configuration throws(RedisError) in
            try NearCache(configuration, client: client, keyPrefix: prefix, logger: logger)
        }
    }

    /// The former spelling of ``init(url:client:keyPrefix:defaultTTL:commandTimeout:socketConnectTimeout:retryOnTimeout:logger:observability:nearCache:jsonCoders:)``,
    /// whose `socketTimeout` is now `commandTimeout`.
    @available(*, deprecated, renamed: "init(url:client:keyPrefix:defaultTTL:commandTimeout:socketConnectTimeout:retryOnTimeout:logger:observability:nearCache:jsonCoders:)")
    public convenience init(
        url: String? = nil,
        client: RedisClient? = nil,
        keyPrefix: String? = nil,
        defaultTTL: Duration? = nil,
        socketTimeout: Duration?,
        socketConnectTimeout: Duration? = nil,
        retryOnTimeout: Bool? = nil,
        logger: Logger = Logger(label: "BaldurCache"),
        observability: RedisObservability = .global,
        nearCache: NearCacheConfiguration? = nil,
        jsonCoders: JSONCoders = .baldur
    ) throws(RedisError) {
        try self.init(
            url: url, client: client, keyPrefix: keyPrefix, defaultTTL: defaultTTL, commandTimeout: socketTimeout,
            socketConnectTimeout: socketConnectTimeout, retryOnTimeout: retryOnTimeout, logger: logger,
            observability: observability, nearCache: nearCache, jsonCoders: jsonCoders
        )
    }

    deinit { nearCache?.tracker.close() }

    /// What the near cache has done, or `nil` without one.
    public var nearCacheStatistics: NearCacheStatistics? { nearCache?.store.statistics }

    // MARK: - Values

    // Each call that is one request is written once, as a ``CacheCall``
    // (what to send, how to read the reply); the synchronous method runs it
    // on the pool, the async one (RedisCacheAdapter+Async.swift) on the
    // event loop.
    //
    // The generic calls below carry a specialization for JSONValue, which
    // their generic entry points dispatch to at run time: callers in other
    // modules otherwise run the unspecialized code (mget of 100 keys: 13,600
    // against 11,300 instructions per key). `@_specialize` rather than
    // Swift 6.2's `@specialized`, so that the package still builds with 6.0.

    /// Reads and decodes `key` (`GET`); `nil` when missing. Throws `decoding` naming the key for a value that is not JSON or not a `T`.
    @_specialize(where T == JSONValue)
    public func get<T: Decodable>(_ key: String, as type: T.Type) throws(RedisError) -> T? {
        guard let nearCache else { return try run("get", key) { () throws(RedisError) in getCall(key, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: key)
        switch nearLookup(get: full, in: nearCache) {
        case .kept(let bytes, let decoded): return try decode(bytes, decoded, key: key, as: type)
        case .fetch(.none):
            // Bypassed (tracking is down) or not keepable: a plain GET, nothing kept.
            defer { nearCache.store.readWithoutKeeping(full) }
            return try run("get", key) { () throws(RedisError) in getCall(key, as: type) }
        case .fetch(let ticket):
            let replies = try fetching("get", key, Self.fetchCommands("GET", full), ticket: ticket, in: nearCache)
            return try nearKeep(get: replies, key: key, ticket: ticket, as: type, in: nearCache)
        }
    }

    @inline(__always)
    func getCall<T: Decodable>(_ key: String, as type: T.Type) -> CacheCall<T?> {
        CacheCall(.command(["GET", storageKey(key)])) { [rawClient, jsonCoders] reply throws(RedisError) in
            guard case .bulk(let bytes) = reply else {
                rawClient.telemetry.cacheLookup("get", hits: 0, misses: 1)
                return nil
            }
            rawClient.telemetry.cacheLookup("get", hits: 1, misses: 0)
            return try jsonCoders.decode(bytes, as: T.self, key: key)
        }
    }

    /// Stores `value` as compact JSON (`SET key json [EX s|PX ms]`, `defaultTTL` when `ttl` is nil).
    @_specialize(where T == JSONValue)
    public func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) {
        try run("set", key) { () throws(RedisError) in try setCall(key, value, ttl: ttl) }
    }

    @inline(__always)
    func setCall<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> CacheCall<Void> {
        let expiry = try CacheArguments.ttlArguments(ttl ?? defaultTTL)
        return CacheCall(.command(CacheArguments.setCommand(storageKey(key), try jsonCoders.encode(value), expiry: expiry))) { _ in }
    }

    /// Deletes `key` (`DEL`); `true` when it existed.
    @discardableResult
    public func delete(_ key: String) throws(RedisError) -> Bool {
        try run("delete", key) { () throws(RedisError) in deleteCall(key) }
    }

    func deleteCall(_ key: String) -> CacheCall<Bool> {
        CacheCall(.command(["DEL", storageKey(key)])) { reply throws(RedisError) in try reply.expectInteger("DEL") > 0 }
    }

    /// `true` when `key` exists (`EXISTS`).
    public func exists(_ key: String) throws(RedisError) -> Bool {
        guard let nearCache else { return try run("exists", key) { () throws(RedisError) in existsCall(key) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: key)
        if let kept = nearAnswer(exists: full, in: nearCache) { return kept }
        defer { nearCache.store.readWithoutKeeping(full) }
        return try run("exists", key) { () throws(RedisError) in existsCall(key) }
    }

    func existsCall(_ key: String) -> CacheCall<Bool> {
        CacheCall(.command(["EXISTS", storageKey(key)])) { reply throws(RedisError) in try reply.expectInteger("EXISTS") > 0 }
    }

    // MARK: - Counters and TTLs

    /// Adds `amount` (`INCRBY`) and returns the new value.
    @discardableResult
    public func incr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        try run("incr", key) { () throws(RedisError) in counterCall("INCRBY", key, amount) }
    }

    /// Subtracts `amount` (`DECRBY`) and returns the new value.
    @discardableResult
    public func decr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        try run("decr", key) { () throws(RedisError) in counterCall("DECRBY", key, amount) }
    }

    func counterCall(_ command: StaticString, _ key: String, _ amount: Int64) -> CacheCall<Int64> {
        CacheCall(.command([RedisArgument(command.description), storageKey(key), RedisArgument(amount)])) { reply throws(RedisError) in
            try reply.expectInteger(command)
        }
    }

    /// Sets the time to live (`EXPIRE`, or `PEXPIRE` for fractional seconds); `true` when the key exists.
    @discardableResult
    public func expire(_ key: String, ttl: Duration) throws(RedisError) -> Bool {
        try run("expire", key) { () throws(RedisError) in try expireCall(key, ttl: ttl) }
    }

    func expireCall(_ key: String, ttl: Duration) throws(RedisError) -> CacheCall<Bool> {
        let arguments = try CacheArguments.ttlArguments(ttl)
        let command: RedisArgument = arguments[0] == "EX" ? "EXPIRE" : "PEXPIRE"
        return CacheCall(.command([command, storageKey(key), arguments[1]])) { reply throws(RedisError) in try reply.expectInteger("EXPIRE") == 1 }
    }

    /// How long `key` has left (`PTTL`).
    public func lifetime(of key: String) throws(RedisError) -> KeyLifetime {
        try run("lifetime", key) { () throws(RedisError) in lifetimeCall(key) }
    }

    func lifetimeCall(_ key: String) -> CacheCall<KeyLifetime> {
        CacheCall(.command(["PTTL", storageKey(key)])) { reply throws(RedisError) in
            KeyLifetime(pttl: try reply.expectInteger("PTTL"))
        }
    }

    /// Stores `value` iff `key` is absent, TTL included, atomically (`SET key json NX [EX|PX]`).
    @_specialize(where T == JSONValue)
    public func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> Bool {
        try run("setnx", key) { () throws(RedisError) in try setnxCall(key, value, ttl: ttl) }
    }

    func setnxCall<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> CacheCall<Bool> {
        let expiry = try CacheArguments.ttlArguments(ttl)
        let command = CacheArguments.setCommand(storageKey(key), try jsonCoders.encode(value), onlyIfAbsent: true, expiry: expiry)
        return CacheCall(.command(command)) { reply throws(RedisError) in try reply.throwingServerError() == .status("OK") }
    }

    // MARK: - Compare-and-set

    /// Compare-and-set on one field of a JSON record (one `EVALSHA`; see ``CacheProvider``).
    @_specialize(where T == JSONValue)
    public func casDictField<T: Encodable>(
        _ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?
    ) throws(RedisError) -> Bool {
        try run("casDictField", key) { () throws(RedisError) in try casDictFieldCall(key, field: field, expected: expected, newValue: newValue, ttl: ttl) }
    }

    func casDictFieldCall<T: Encodable>(
        _ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?
    ) throws(RedisError) -> CacheCall<Bool> {
        let expectedJSON = try jsonCoders.encode(CacheArguments.validExpected(expected))
        let arguments: [RedisArgument] = [
            RedisArgument(field), .bytes(expectedJSON), .bytes(try jsonCoders.encode(newValue)), RedisArgument(try CacheArguments.ttlMilliseconds(ttl)),
        ]
        return CacheCall(.script(BaldurScripts.casDictField, keys: [storageKey(key)], arguments: arguments)) { reply throws(RedisError) in
            try reply.expectInteger("casDictField script") == 1
        }
    }

    /// Takes over a failed or stale executing record (one `EVALSHA`; see ``CacheProvider``).
    public func casTakeover<T: Encodable>(
        _ key: String, newRecord: T, staleBefore: Double, ttl: Duration?
    ) throws(RedisError) -> Bool {
        try run("casTakeover", key) { () throws(RedisError) in try casTakeoverCall(key, newRecord: newRecord, staleBefore: staleBefore, ttl: ttl) }
    }

    func casTakeoverCall<T: Encodable>(_ key: String, newRecord: T, staleBefore: Double, ttl: Duration?) throws(RedisError) -> CacheCall<Bool> {
        let arguments: [RedisArgument] = [
            .bytes(try jsonCoders.encode(newRecord)), RedisArgument(try CacheArguments.number(staleBefore)),
            RedisArgument(try CacheArguments.ttlMilliseconds(ttl)),
        ]
        return CacheCall(.script(BaldurScripts.casTakeover, keys: [storageKey(key)], arguments: arguments)) { reply throws(RedisError) in
            try reply.expectInteger("casTakeover script") == 1
        }
    }

    /// Stores `value` iff `fencingToken` is not stale (one `EVALSHA` over `key` and `{key}:fence-seen`, in the key's slot).
    public func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) throws(RedisError) -> Bool {
        try run("setIfFenced", key) { () throws(RedisError) in try setIfFencedCall(key, value, fencingToken: fencingToken) }
    }

    func setIfFencedCall<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) throws(RedisError) -> CacheCall<Bool> {
        let full = keyPrefix.resolve() + key
        let request = CacheRequest.script(
            BaldurScripts.fencedSet, keys: [RedisArgument(full), RedisArgument(ClusterSlot.companion(of: full, suffix: ":fence-seen"))],
            arguments: [.bytes(try jsonCoders.encode(value)), RedisArgument(fencingToken)]
        )
        return CacheCall(request) { reply throws(RedisError) in try reply.expectInteger("fenced set script") == 1 }
    }

    // MARK: - Locks

    /// A lock on prefix + `name`, resolved now (`SET NX PX` to acquire, `EVALSHA` to release).
    public func getLock(_ name: String, timeout: Duration, blockingTimeout: Duration?) -> DistributedLock {
        DistributedLock(key: keyPrefix.resolve() + name, store: RedisLockStore(client: rawClient), timeout: timeout, blockingTimeout: blockingTimeout)
    }

    // MARK: - Bulk

    /// Reads many keys in one `MGET`; missing keys are omitted.
    @_specialize(where T == JSONValue)
    public func mget<T: Decodable>(_ keys: [String], as type: T.Type) throws(RedisError) -> [String: T] {
        guard !keys.isEmpty else { return [:] }
        guard let nearCache else { return try run("mget", "\(keys.count) keys") { () throws(RedisError) in mgetCall(keys, as: type) } }
        switch try nearMget(keys, as: type, in: nearCache) {
        case .answered(let found): return found
        case .fetch(let call, let count): return try run("mget", "\(count) keys") { () throws(RedisError) in call }
        }
    }

    func mgetCall<T: Decodable>(_ keys: [String], as type: T.Type) -> CacheCall<[String: T]> {
        let prefix = keyPrefix.resolve()
        return CacheCall(.command(["MGET"] + keys.map { RedisArgument(prefix: prefix, key: $0) })) { [rawClient, jsonCoders] reply throws(RedisError) in
            let replies = try reply.expectArray("MGET")
            var result: [String: T] = [:]
            result.reserveCapacity(keys.count)
            var hits = 0
            for (key, reply) in zip(keys, replies) {
                if case .bulk(let bytes) = reply {
                    hits += 1
                    result[key] = try jsonCoders.decode(bytes, as: T.self, key: key)
                }
            }
            rawClient.telemetry.cacheLookup("mget", hits: hits, misses: keys.count - hits)
            return result
        }
    }

    /// Stores many values in one round trip: `MSET`, or pipelined `SET ... EX|PX` with a TTL.
    ///
    /// With a TTL the `SET`s are not a transaction: a connection lost midway
    /// can leave some keys written, and the call throws. Python Baldur wraps
    /// them in `MULTI`/`EXEC`, which doubles the server's time per key
    /// (`INFO commandstats`: 2.3 µs against 1.1 µs); `MSET` without a TTL is atomic.
    @_specialize(where T == JSONValue)
    public func mset<T: Encodable>(_ values: [String: T], ttl: Duration?) throws(RedisError) {
        guard !values.isEmpty else { return }
        let prefix = keyPrefix.resolve()
        guard let nearCache else { return try msetUncached(values, ttl: ttl, prefix: prefix) }
        try nearCache.writing(keys: values.keys.map { NearKey(prefix: prefix, key: $0) }) { () throws(RedisError) in try msetUncached(values, ttl: ttl, prefix: prefix) }
    }

    private func msetUncached<T: Encodable>(_ values: [String: T], ttl: Duration?, prefix: String) throws(RedisError) {
        try logged("mset", "\(values.count) keys") { () throws(RedisError) in
            guard let ttl else {
                try rawClient.send(try msetCommand(values, prefix: prefix))
                return
            }
            let expiry = try CacheArguments.ttlArguments(ttl)
            let keys = Array(values.keys)
            let items = Array(values.values)
            // JSON values are encoded as their SETs are sent, so Redis
            // works through the first while the rest are encoded. Every
            // value is checked first: a bad one fails the call before
            // anything is written. Other types are encoded up front.
            let encodedLater = items as? [JSONValue]
            if let encodedLater {
                for value in encodedLater { try JSONWriter.validate(value) }
            }
            let encodedNow = encodedLater != nil ? [] : try items.map { value throws(RedisError) in try jsonCoders.encode(value) }
            let first: [RedisArgument] = ["SET", RedisArgument(prefix: prefix, key: keys[0])]
            let replies = try rawClient.pipeline(count: items.count, routedLike: first, retryable: false) { index throws(RedisError) in
                let json: [UInt8]
                if let encodedLater { json = try JSONWriter.encode(encodedLater[index]) } else { json = encodedNow[index] }
                return CacheArguments.setCommand(RedisArgument(prefix: prefix, key: keys[index]), json, expiry: expiry)
            }
            for reply in replies { try reply.throwingServerError() }
        }
    }

    /// `MSET key json key json ...` for `values` under `prefix`.
    func msetCommand<T: Encodable>(_ values: [String: T], prefix: String) throws(RedisError) -> [RedisArgument] {
        var command: [RedisArgument] = ["MSET"]
        command.reserveCapacity(1 + values.count * 2)
        for (key, value) in values {
            command.append(RedisArgument(prefix: prefix, key: key))
            command.append(.bytes(try jsonCoders.encode(value)))
        }
        return command
    }

    /// Deletes many keys in one `DEL`; returns how many existed.
    @discardableResult
    public func mdelete(_ keys: [String]) throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        guard let nearCache else { return try run("mdelete", "\(keys.count) keys") { () throws(RedisError) in mdeleteCall(keys) } }
        let prefix = keyPrefix.resolve()
        return try nearCache.writing(keys: keys.map { NearKey(prefix: prefix, key: $0) }) { () throws(RedisError) in
            try run("mdelete", "\(keys.count) keys") { () throws(RedisError) in mdeleteCall(keys) }
        }
    }

    func mdeleteCall(_ keys: [String]) -> CacheCall<Int> {
        let prefix = keyPrefix.resolve()
        return CacheCall(.command(["DEL"] + keys.map { RedisArgument(prefix: prefix, key: $0) })) { reply throws(RedisError) in
            Int(try reply.expectInteger("DEL"))
        }
    }

    // MARK: - Hashes

    /// Reads one hash field (`HGET`) and decodes it.
    @_specialize(where T == JSONValue)
    public func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) throws(RedisError) -> T? {
        guard let nearCache else { return try run("hget", name) { () throws(RedisError) in hgetCall(name, field: field, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: name)
        if let kept = try nearAnswer(hget: full, name: name, field: field, as: type, in: nearCache) { return kept }
        defer { nearCache.store.readWithoutKeeping(full) }
        return try run("hget", name) { () throws(RedisError) in hgetCall(name, field: field, as: type) }
    }

    func hgetCall<T: Decodable>(_ name: String, field: String, as type: T.Type) -> CacheCall<T?> {
        CacheCall(.command(["HGET", storageKey(name), RedisArgument(field)])) { [jsonCoders] reply throws(RedisError) in
            guard case .bulk(let bytes) = reply else { return nil }
            return try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]")
        }
    }

    /// Stores one hash field as JSON (`HSET`).
    @_specialize(where T == JSONValue)
    public func hset<T: Encodable>(_ name: String, field: String, _ value: T) throws(RedisError) {
        try run("hset", name) { () throws(RedisError) in try hsetCall(name, field: field, value) }
    }

    func hsetCall<T: Encodable>(_ name: String, field: String, _ value: T) throws(RedisError) -> CacheCall<Void> {
        CacheCall(.command(["HSET", storageKey(name), RedisArgument(field), .bytes(try jsonCoders.encode(value))])) { _ in }
    }

    /// Reads every field of a hash (`HGETALL`).
    public func hgetall<T: Decodable>(_ name: String, as type: T.Type) throws(RedisError) -> [String: T] {
        guard let nearCache else { return try run("hgetall", name) { () throws(RedisError) in hgetallCall(name, as: type) } }
        let full = NearKey(prefix: keyPrefix.resolve(), key: name)
        switch try nearLookup(hgetall: full, name: name, as: type, in: nearCache) {
        case .answered(let fields): return fields
        case .fetch(.none):
            defer { nearCache.store.readWithoutKeeping(full) }
            return try run("hgetall", name) { () throws(RedisError) in hgetallCall(name, as: type) }
        case .fetch(let ticket):
            let replies = try fetching("hgetall", name, Self.fetchCommands("HGETALL", full), ticket: ticket, in: nearCache)
            return try nearKeep(hgetall: replies, name: name, ticket: ticket, as: type, in: nearCache)
        }
    }

    func hgetallCall<T: Decodable>(_ name: String, as type: T.Type) -> CacheCall<[String: T]> {
        CacheCall(.command(["HGETALL", storageKey(name)])) { [jsonCoders] reply throws(RedisError) in
            let flat = try reply.expectArray("HGETALL")
            var result: [String: T] = [:]
            var index = 0
            while index + 1 < flat.count {
                let field = flat[index].string ?? String(decoding: flat[index].bytes ?? [], as: UTF8.self)
                if let bytes = flat[index + 1].bytes {
                    result[field] = try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]")
                }
                index += 2
            }
            return result
        }
    }

    // MARK: - Lists

    /// `RPUSH` + `LTRIM` + `PEXPIRE` in one `EVALSHA`; returns the pre-trim length.
    @discardableResult
    @_specialize(where T == JSONValue)
    public func pushLimit<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) throws(RedisError) -> Int {
        try run("pushLimit", key) { () throws(RedisError) in try pushLimitCall(key, value, maxLength: maxLength, ttl: ttl) }
    }

    func pushLimitCall<T: Encodable>(_ key: String, _ value: T, maxLength: Int, ttl: Duration?) throws(RedisError) -> CacheCall<Int> {
        let arguments: [RedisArgument] = [
            .bytes(try jsonCoders.encode(value)), RedisArgument(try CacheArguments.validMaxLength(maxLength)),
            RedisArgument(try CacheArguments.ttlMilliseconds(ttl)),
        ]
        return CacheCall(.script(BaldurScripts.pushLimit, keys: [storageKey(key)], arguments: arguments)) { reply throws(RedisError) in
            Int(try reply.expectInteger("pushLimit script"))
        }
    }

    /// Elements `start...end` of a list (`LRANGE`), decoded.
    public func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) throws(RedisError) -> [T] {
        try run("listRange", key) { () throws(RedisError) in listRangeCall(key, start: start, end: end, as: type) }
    }

    func listRangeCall<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) -> CacheCall<[T]> {
        CacheCall(.command(["LRANGE", storageKey(key), RedisArgument(start), RedisArgument(end)])) { [jsonCoders] reply throws(RedisError) in
            let items = try reply.expectArray("LRANGE")
            var result: [T] = []
            result.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                result.append(try jsonCoders.decode(item.bytes ?? [], as: T.self, key: "\(key)[\(start + index)]"))
            }
            return result
        }
    }

    // MARK: - Health and keys

    /// `true` when Redis answers `PING`; logs the failure at info otherwise.
    public func healthCheck() -> Bool {
        do {
            try rawClient.ping()
            return true
        } catch {
            logger.info("redis health check failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Deletes every key under the prefix (`SCAN MATCH prefix* COUNT 500` + `DEL`), never `FLUSHDB`.
    @discardableResult
    public func flushAll() throws(RedisError) -> Int {
        let prefix = keyPrefix.resolve()
        return try logged("flushAll", prefix) { () throws(RedisError) in try rawClient.telemetry.operation("flushAll") { () throws(RedisError) in
            var deleted = 0
            var cursor: UInt64 = 0
            repeat {
                let page = try scanPageCall(match: Self.globEscaped(prefix) + "*", count: 500, cursor: cursor).run(on: rawClient)
                if !page.keys.isEmpty {
                    deleted += Int(try rawClient.send(["DEL"] + page.keys.map { RedisArgument(bytes: $0) }).expectInteger("DEL"))
                }
                cursor = page.cursor
            } while cursor != 0
            nearCache?.store.invalidateAll(fromServer: false)
            logger.info("redis cache flushed its prefix", metadata: ["prefix": "\(prefix)", "deleted": "\(deleted)"])
            return deleted
        } }
    }

    /// Every key matching `pattern` under the prefix, without it (a full `SCAN`, never `KEYS`).
    public func keys(_ pattern: String) throws(RedisError) -> [String] {
        let prefix = keyPrefix.resolve()
        return try logged("keys", pattern) { () throws(RedisError) in try rawClient.telemetry.operation("keys") { () throws(RedisError) in
            var found: [String] = []
            var cursor: UInt64 = 0
            repeat {
                let page = try scanPageCall(match: Self.globEscaped(prefix) + pattern, count: 1000, cursor: cursor).run(on: rawClient)
                found += page.keys.map { Self.strip(prefix, from: $0) }
                cursor = page.cursor
            } while cursor != 0
            return Self.unique(found)
        } }
    }

    /// One `SCAN cursor MATCH prefix+pattern COUNT count` page, keys without the prefix.
    public func scan(_ pattern: String, count: Int, cursor: UInt64) throws(RedisError) -> (cursor: UInt64, keys: [String]) {
        try run("scan", pattern) { () throws(RedisError) in try scanCall(pattern, count: count, cursor: cursor) }
    }

    func scanCall(_ pattern: String, count: Int, cursor: UInt64) throws(RedisError) -> CacheCall<(cursor: UInt64, keys: [String])> {
        guard count > 0 else { throw RedisError(.invalidArgument, "scan count must be at least 1, not \(count)") }
        let prefix = keyPrefix.resolve()
        return scanPageCall(match: Self.globEscaped(prefix) + pattern, count: count, cursor: cursor).map { page in
            (page.cursor, page.keys.map { Self.strip(prefix, from: $0) })
        }
    }

    /// Closes every pooled connection; idempotent.
    public func close() {
        nearCache?.tracker.close()
        rawClient.close()
    }

    /// Drops every pooled connection and proves Redis is back with `PING`.
    public func reconnect() throws(RedisError) { try rawClient.reconnect() }

    // MARK: - Internals

    func storageKey(_ key: String) -> RedisArgument { RedisArgument(prefix: keyPrefix.resolve(), key: key) }

    func scanPageCall(match: String, count: Int, cursor: UInt64) -> CacheCall<(cursor: UInt64, keys: [[UInt8]])> {
        CacheCall(.command(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(match), "COUNT", RedisArgument(count)])) { reply throws(RedisError) in
            let reply = try reply.expectArray("SCAN")
            guard reply.count == 2, let next = reply[0].string.flatMap({ UInt64($0) }), let keys = reply[1].array else {
                throw RedisError(.protocolError, "SCAN returned an unexpected reply shape")
            }
            return (next, keys.compactMap(\.bytes))
        }
    }

    static func strip(_ prefix: String, from key: [UInt8]) -> String {
        let prefixCount = prefix.utf8.count
        return String(decoding: key.count >= prefixCount ? key[prefixCount...] : key[...], as: UTF8.self)
    }

    /// `keys` without repeats, in order: `SCAN` may return a key more than
    /// once while the keyspace is rehashed.
    static func unique(_ keys: [String]) -> [String] {
        var seen = Set<String>()
        return keys.filter { seen.insert($0).inserted }
    }

    /// The prefix with glob metacharacters escaped, so `SCAN MATCH` reads it literally.
    static func globEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    /// Runs the one-request call `make` builds (building it checks the
    /// arguments), logged as ``logged(_:_:_:)`` logs.
    @inline(__always)
    private func run<R>(_ operation: String, _ key: String, _ make: () throws(RedisError) -> CacheCall<R>) throws(RedisError) -> R {
        guard let nearCache, NearCache.writes.contains(operation) else {
            return try logged(operation, key) { () throws(RedisError) in try make().run(on: rawClient) }
        }
        return try nearCache.writing(NearKey(prefix: keyPrefix.resolve(), key: key)) { () throws(RedisError) in
            try logged(operation, key) { () throws(RedisError) in try make().run(on: rawClient) }
        }
    }

    /// A near-cached read's pipeline; a failure forgets its placeholder.
    private func fetching(
        _ operation: String, _ key: String, _ commands: [[RedisArgument]], ticket: NearCacheStore.Ticket?, in nearCache: NearCache
    ) throws(RedisError) -> [RedisReply] {
        do { return try logged(operation, key) { () throws(RedisError) in try rawClient.pipeline(commands) } } catch {
            nearCache.store.abandon(ticket)
            throw error
        }
    }

    /// Runs one operation; logs a failure at debug level with the operation and key, never the value.
    @discardableResult
    func logged<R>(_ operation: String, _ key: String, _ body: () throws(RedisError) -> R) throws(RedisError) -> R {
        do {
            return try body()
        } catch {
            logger.debug("redis cache operation failed", metadata: [
                "operation": "\(operation)", "key": "\(key)", "error.code": "\(error.code)", "error": "\(error.message)",
            ])
            throw error
        }
    }
}

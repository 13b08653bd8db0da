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
    /// The TTL ``set(_:_:ttl:)`` uses when given none.
    public let defaultTTL: Duration?
    private let logger: Logger

    /// Creates an adapter.
    ///
    /// - Parameters:
    ///   - url: A Redis URL; `nil` reads `BALDUR_REDIS_URL` (default `redis://localhost:6379/0`).
    ///     The other `BALDUR_REDIS_*` variables apply either way.
    ///   - client: A client to use instead of making one; it wins over `url`.
    ///   - keyPrefix: `nil` dynamic (`baldur:`, namespaced, synthetic-aware), `""` none,
    ///     anything else used literally. See ``KeyPrefix``.
    ///   - defaultTTL: The TTL of `set` calls that pass none.
    ///   - socketTimeout: Overrides the reply timeout.
    ///   - socketConnectTimeout: Overrides the connect timeout.
    ///   - retryOnTimeout: Overrides whether read-only commands retry once.
    ///   - logger: Receives debug and info messages with keys and operations, never values.
    ///   - observability: Where metrics and spans go, for a client made here
    ///     (an injected `client` keeps its own).
    /// - Throws: ``RedisError/Code/invalidConfiguration`` for a bad URL or variable.
    public init(
        url: String? = nil,
        client: RedisClient? = nil,
        keyPrefix: String? = nil,
        defaultTTL: Duration? = nil,
        socketTimeout: Duration? = nil,
        socketConnectTimeout: Duration? = nil,
        retryOnTimeout: Bool? = nil,
        logger: Logger = Logger(label: "BaldurCache"),
        observability: RedisObservability = .global
    ) throws(RedisError) {
        if let defaultTTL { _ = try CacheArguments.validTTL(defaultTTL) }
        if let client {
            rawClient = client
        } else {
            var environment = ProcessInfo.processInfo.environment
            if let url { environment["BALDUR_REDIS_URL"] = url }
            var configuration = try RedisConfiguration.fromEnvironment(environment)
            if let socketTimeout { configuration.socketTimeout = socketTimeout }
            if let socketConnectTimeout { configuration.connectTimeout = socketConnectTimeout }
            if let retryOnTimeout { configuration.retryOnTimeout = retryOnTimeout }
            rawClient = try RedisClient(configuration: configuration, logger: logger, observability: observability)
        }
        self.keyPrefix = KeyPrefix(keyPrefix)
        self.defaultTTL = defaultTTL
        self.logger = logger
    }

    // MARK: - Values

    // The generic calls below carry a specialization for JSONValue, which
    // their generic entry points dispatch to at run time: callers in other
    // modules otherwise run the unspecialized code (mget of 100 keys: 13,600
    // against 11,300 instructions per key). `@_specialize` rather than
    // Swift 6.2's `@specialized`, so that the package still builds with 6.0.

    /// Reads and decodes `key` (`GET`); `nil` when missing. Throws `decoding` naming the key for a value that is not JSON or not a `T`.
    @_specialize(where T == JSONValue)
    public func get<T: Decodable>(_ key: String, as type: T.Type) throws(RedisError) -> T? {
        try logged("get", key) { () throws(RedisError) in
            let reply = try rawClient.send("GET", storageKey(key))
            guard case .bulk(let bytes) = reply else {
                rawClient.telemetry.cacheLookup("get", hits: 0, misses: 1)
                return nil
            }
            rawClient.telemetry.cacheLookup("get", hits: 1, misses: 0)
            return try JSONCodec.decode(bytes, as: T.self, key: key)
        }
    }

    /// Stores `value` as compact JSON (`SET key json [EX s|PX ms]`, `defaultTTL` when `ttl` is nil).
    @_specialize(where T == JSONValue)
    public func set<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) {
        try logged("set", key) { () throws(RedisError) in
            let expiry = try CacheArguments.ttlArguments(ttl ?? defaultTTL)
            try rawClient.send(CacheArguments.setCommand(storageKey(key), try JSONCodec.encode(value), expiry: expiry))
        }
    }

    /// Deletes `key` (`DEL`); `true` when it existed.
    @discardableResult
    public func delete(_ key: String) throws(RedisError) -> Bool {
        try logged("delete", key) { () throws(RedisError) in
            try rawClient.send("DEL", storageKey(key)).expectInteger("DEL") > 0
        }
    }

    /// `true` when `key` exists (`EXISTS`).
    public func exists(_ key: String) throws(RedisError) -> Bool {
        try logged("exists", key) { () throws(RedisError) in
            try rawClient.send("EXISTS", storageKey(key)).expectInteger("EXISTS") > 0
        }
    }

    // MARK: - Counters and TTLs

    /// Adds `amount` (`INCRBY`) and returns the new value.
    @discardableResult
    public func incr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        try logged("incr", key) { () throws(RedisError) in
            try rawClient.send("INCRBY", storageKey(key), RedisArgument(amount)).expectInteger("INCRBY")
        }
    }

    /// Subtracts `amount` (`DECRBY`) and returns the new value.
    @discardableResult
    public func decr(_ key: String, by amount: Int64) throws(RedisError) -> Int64 {
        try logged("decr", key) { () throws(RedisError) in
            try rawClient.send("DECRBY", storageKey(key), RedisArgument(amount)).expectInteger("DECRBY")
        }
    }

    /// Sets the time to live (`EXPIRE`, or `PEXPIRE` for fractional seconds); `true` when the key exists.
    @discardableResult
    public func expire(_ key: String, ttl: Duration) throws(RedisError) -> Bool {
        try logged("expire", key) { () throws(RedisError) in
            let arguments = try CacheArguments.ttlArguments(ttl)
            let command: RedisArgument = arguments[0] == "EX" ? "EXPIRE" : "PEXPIRE"
            return try rawClient.send(command, storageKey(key), arguments[1]).expectInteger("EXPIRE") == 1
        }
    }

    /// Seconds left (`TTL`): `nil` without expiry, `-2` when missing.
    public func ttl(_ key: String) throws(RedisError) -> Int? {
        try logged("ttl", key) { () throws(RedisError) in
            let seconds = try rawClient.send("TTL", storageKey(key)).expectInteger("TTL")
            return seconds == -1 ? nil : Int(seconds)
        }
    }

    /// Stores `value` iff `key` is absent, TTL included, atomically (`SET key json NX [EX|PX]`).
    @_specialize(where T == JSONValue)
    public func setnx<T: Encodable>(_ key: String, _ value: T, ttl: Duration?) throws(RedisError) -> Bool {
        try logged("setnx", key) { () throws(RedisError) in
            let expiry = try CacheArguments.ttlArguments(ttl)
            let command = CacheArguments.setCommand(storageKey(key), try JSONCodec.encode(value), onlyIfAbsent: true, expiry: expiry)
            return try rawClient.send(command) == .status("OK")
        }
    }

    // MARK: - Compare-and-set

    /// Compare-and-set on one field of a JSON record (one `EVALSHA`; see ``CacheProvider``).
    @_specialize(where T == JSONValue)
    public func casDictField<T: Encodable>(
        _ key: String, field: String, expected: JSONValue, newValue: T, ttl: Duration?
    ) throws(RedisError) -> Bool {
        try logged("casDictField", key) { () throws(RedisError) in
            let expectedJSON = try JSONCodec.encode(CacheArguments.validExpected(expected))
            let reply = try BaldurScripts.casDictField.run(
                on: rawClient,
                keys: [storageKey(key)],
                arguments: [RedisArgument(field), .bytes(expectedJSON), .bytes(try JSONCodec.encode(newValue)),
                            RedisArgument(try CacheArguments.ttlMilliseconds(ttl))]
            )
            return try reply.expectInteger("casDictField script") == 1
        }
    }

    /// Takes over a failed or stale executing record (one `EVALSHA`; see ``CacheProvider``).
    public func casTakeover<T: Encodable>(
        _ key: String, newRecord: T, staleBefore: Double, ttl: Duration?
    ) throws(RedisError) -> Bool {
        try logged("casTakeover", key) { () throws(RedisError) in
            let reply = try BaldurScripts.casTakeover.run(
                on: rawClient,
                keys: [storageKey(key)],
                arguments: [.bytes(try JSONCodec.encode(newRecord)), RedisArgument(try CacheArguments.number(staleBefore)),
                             RedisArgument(try CacheArguments.ttlMilliseconds(ttl))]
            )
            return try reply.expectInteger("casTakeover script") == 1
        }
    }

    /// Stores `value` iff `fencingToken` is not stale (one `EVALSHA` over `key` and `key:fence-seen`).
    public func setIfFenced<T: Encodable>(_ key: String, _ value: T, fencingToken: Int64) throws(RedisError) -> Bool {
        try logged("setIfFenced", key) { () throws(RedisError) in
            let full = keyPrefix.resolve() + key
            return try BaldurScripts.fencedSet.run(
                on: rawClient, keys: [RedisArgument(full), RedisArgument(full + ":fence-seen")],
                arguments: [.bytes(try JSONCodec.encode(value)), RedisArgument(fencingToken)]
            ).expectInteger("fenced set script") == 1
        }
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
        return try logged("mget", "\(keys.count) keys") { () throws(RedisError) in
            let prefix = keyPrefix.resolve()
            let replies = try rawClient.send(["MGET"] + keys.map { RedisArgument(prefix: prefix, key: $0) }).expectArray("MGET")
            var result: [String: T] = [:]
            result.reserveCapacity(keys.count)
            var hits = 0
            for (key, reply) in zip(keys, replies) {
                if case .bulk(let bytes) = reply {
                    hits += 1
                    result[key] = try JSONCodec.decode(bytes, as: T.self, key: key)
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
        try logged("mset", "\(values.count) keys") { () throws(RedisError) in
            let prefix = keyPrefix.resolve()
            if let ttl {
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
                let encodedNow = encodedLater != nil ? [] : try items.map { value throws(RedisError) in try JSONCodec.encode(value) }
                let first: [RedisArgument] = ["SET", RedisArgument(prefix: prefix, key: keys[0])]
                let replies = try rawClient.pipeline(count: items.count, routedLike: first, retryable: false) { index throws(RedisError) in
                    let json: [UInt8]
                    if let encodedLater { json = try JSONWriter.encode(encodedLater[index]) } else { json = encodedNow[index] }
                    return CacheArguments.setCommand(RedisArgument(prefix: prefix, key: keys[index]), json, expiry: expiry)
                }
                for reply in replies { try reply.throwingServerError() }
            } else {
                var command: [RedisArgument] = ["MSET"]
                command.reserveCapacity(1 + values.count * 2)
                for (key, value) in values {
                    command.append(RedisArgument(prefix: prefix, key: key))
                    command.append(.bytes(try JSONCodec.encode(value)))
                }
                try rawClient.send(command)
            }
        }
    }

    /// Deletes many keys in one `DEL`; returns how many existed.
    @discardableResult
    public func mdelete(_ keys: [String]) throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        return try logged("mdelete", "\(keys.count) keys") { () throws(RedisError) in
            let prefix = keyPrefix.resolve()
            return Int(try rawClient.send(["DEL"] + keys.map { RedisArgument(prefix: prefix, key: $0) }).expectInteger("DEL"))
        }
    }

    // MARK: - Hashes

    /// Reads one hash field (`HGET`) and decodes it.
    @_specialize(where T == JSONValue)
    public func hget<T: Decodable>(_ name: String, field: String, as type: T.Type) throws(RedisError) -> T? {
        try logged("hget", name) { () throws(RedisError) in
            guard case .bulk(let bytes) = try rawClient.send("HGET", storageKey(name), RedisArgument(field)) else { return nil }
            return try JSONCodec.decode(bytes, as: T.self, key: "\(name)[\(field)]")
        }
    }

    /// Stores one hash field as JSON (`HSET`).
    @_specialize(where T == JSONValue)
    public func hset<T: Encodable>(_ name: String, field: String, _ value: T) throws(RedisError) {
        try logged("hset", name) { () throws(RedisError) in
            try rawClient.send("HSET", storageKey(name), RedisArgument(field), .bytes(try JSONCodec.encode(value)))
        }
    }

    /// Reads every field of a hash (`HGETALL`).
    public func hgetall<T: Decodable>(_ name: String, as type: T.Type) throws(RedisError) -> [String: T] {
        try logged("hgetall", name) { () throws(RedisError) in
            let flat = try rawClient.send("HGETALL", storageKey(name)).expectArray("HGETALL")
            var result: [String: T] = [:]
            var index = 0
            while index + 1 < flat.count {
                let field = flat[index].string ?? String(decoding: flat[index].bytes ?? [], as: UTF8.self)
                if let bytes = flat[index + 1].bytes {
                    result[field] = try JSONCodec.decode(bytes, as: T.self, key: "\(name)[\(field)]")
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
        try logged("pushLimit", key) { () throws(RedisError) in
            let reply = try BaldurScripts.pushLimit.run(
                on: rawClient,
                keys: [storageKey(key)],
                arguments: [.bytes(try JSONCodec.encode(value)), RedisArgument(try CacheArguments.validMaxLength(maxLength)),
                            RedisArgument(try CacheArguments.ttlMilliseconds(ttl))]
            )
            return Int(try reply.expectInteger("pushLimit script"))
        }
    }

    /// Elements `start...end` of a list (`LRANGE`), decoded.
    public func listRange<T: Decodable>(_ key: String, start: Int, end: Int, as type: T.Type) throws(RedisError) -> [T] {
        try logged("listRange", key) { () throws(RedisError) in
            let items = try rawClient.send("LRANGE", storageKey(key), RedisArgument(start), RedisArgument(end)).expectArray("LRANGE")
            var result: [T] = []
            result.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                result.append(try JSONCodec.decode(item.bytes ?? [], as: T.self, key: "\(key)[\(start + index)]"))
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
                let page = try scanPage(match: Self.globEscaped(prefix) + "*", count: 500, cursor: cursor)
                if !page.keys.isEmpty {
                    deleted += Int(try rawClient.send(["DEL"] + page.keys.map { RedisArgument(bytes: $0) }).expectInteger("DEL"))
                }
                cursor = page.cursor
            } while cursor != 0
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
                let page = try scanPage(match: Self.globEscaped(prefix) + pattern, count: 1000, cursor: cursor)
                found += page.keys.map { Self.strip(prefix, from: $0) }
                cursor = page.cursor
            } while cursor != 0
            // SCAN may return a key more than once while the keyspace is rehashed.
            var seen = Set<String>()
            return found.filter { seen.insert($0).inserted }
        } }
    }

    /// One `SCAN cursor MATCH prefix+pattern COUNT count` page, keys without the prefix.
    public func scan(_ pattern: String, count: Int, cursor: UInt64) throws(RedisError) -> (cursor: UInt64, keys: [String]) {
        guard count > 0 else { throw RedisError(.invalidArgument, "scan count must be at least 1, not \(count)") }
        let prefix = keyPrefix.resolve()
        return try logged("scan", pattern) { () throws(RedisError) in
            let page = try scanPage(match: Self.globEscaped(prefix) + pattern, count: count, cursor: cursor)
            return (page.cursor, page.keys.map { Self.strip(prefix, from: $0) })
        }
    }

    /// Closes every pooled connection; idempotent.
    public func close() { rawClient.close() }

    /// Drops every pooled connection and proves Redis is back with `PING`.
    public func reconnect() throws(RedisError) { try rawClient.reconnect() }

    // MARK: - Internals

    private func storageKey(_ key: String) -> RedisArgument { RedisArgument(prefix: keyPrefix.resolve(), key: key) }

    private func scanPage(match: String, count: Int, cursor: UInt64) throws(RedisError) -> (cursor: UInt64, keys: [[UInt8]]) {
        let reply = try rawClient.send("SCAN", RedisArgument(cursor), "MATCH", RedisArgument(match), "COUNT", RedisArgument(count)).expectArray("SCAN")
        guard reply.count == 2, let next = reply[0].string.flatMap({ UInt64($0) }), let keys = reply[1].array else {
            throw RedisError(.protocolError, "SCAN returned an unexpected reply shape")
        }
        return (next, keys.compactMap(\.bytes))
    }

    private static func strip(_ prefix: String, from key: [UInt8]) -> String {
        let prefixCount = prefix.utf8.count
        return String(decoding: key.count >= prefixCount ? key[prefixCount...] : key[...], as: UTF8.self)
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

    /// Runs one operation; logs a failure at debug level with the operation and key, never the value.
    @discardableResult
    private func logged<R>(_ operation: String, _ key: String, _ body: () throws(RedisError) -> R) throws(RedisError) -> R {
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

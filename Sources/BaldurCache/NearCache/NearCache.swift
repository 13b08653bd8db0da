import Logging

/// A ``RedisCacheAdapter``'s near cache: the store and the connection that
/// keeps Redis tracking its keys (see ``NearCacheConfiguration``).
final class NearCache: Sendable {
    let store: NearCacheStore
    let tracker: NearCacheTracker
    /// The prefixes Redis broadcasts for; empty: every key.
    let prefixes: [String]

    /// The adapter operations (as ``RedisCacheAdapter`` names them) that
    /// write their key: its entry is dropped before the write is sent and
    /// again once it is answered, so a read in flight meanwhile stores
    /// nothing and this process reads its own write.
    static let writes: Set<String> = [
        "set", "setnx", "delete", "incr", "decr", "expire", "casDictField", "casTakeover", "setIfFenced", "hset", "pushLimit",
    ]

    init(_ configuration: NearCacheConfiguration, client: RedisClient, keyPrefix: KeyPrefix, logger: Logger) throws(RedisError) {
        try configuration.validate()
        if case .cluster = client.configuration.topology {
            throw RedisError(.unsupported, "the near cache does not run on Redis Cluster yet; use it with a single server or Sentinel")
        }
        store = NearCacheStore(configuration: configuration, meters: client.telemetry.nearCacheMeters())
        prefixes = Self.prefixes(of: keyPrefix)
        tracker = NearCacheTracker(store: store, client: client, prefixes: prefixes, logger: logger)
        tracker.start()
    }

    /// What Redis broadcasts invalidations for: the adapter's prefix (both
    /// forms of a dynamic one: plain and synthetic), or every key for none.
    static func prefixes(of keyPrefix: KeyPrefix) -> [String] {
        switch keyPrefix {
        case .none: return []
        case .literal(let text): return [text]
        case .dynamic:
            let base = Namespace.current.keyPrefix
            return [base, "\(SyntheticMode.keyPrefix):\(base)"]
        }
    }

    /// Whether Redis broadcasts changes under `prefix`. A dynamic prefix
    /// resolved differently from when the cache was made (the namespace
    /// changed) is not tracked: such reads bypass the cache.
    @inline(__always)
    func tracks(_ prefix: String) -> Bool {
        prefixes.isEmpty || prefixes.contains(prefix)
    }

    /// Runs `write` with `key`'s entry dropped before and after.
    @inline(__always)
    func writing<R, E: Error>(_ key: NearKey, _ write: () throws(E) -> R) throws(E) -> R {
        store.invalidate(key, fromServer: false)
        defer { store.invalidate(key, fromServer: false) }
        return try write()
    }

    /// ``writing(_:_:)`` for async writes.
    func writing<R>(_ key: NearKey, _ write: () async throws -> R) async throws -> R {
        store.invalidate(key, fromServer: false)
        defer { store.invalidate(key, fromServer: false) }
        return try await write()
    }

    /// Runs `write` with every entry of `keys` dropped before and after.
    func writing<R, E: Error>(keys: [NearKey], _ write: () throws(E) -> R) throws(E) -> R {
        for key in keys { store.invalidate(key, fromServer: false) }
        defer { for key in keys { store.invalidate(key, fromServer: false) } }
        return try write()
    }

    /// ``writing(keys:_:)`` for async writes.
    func writing<R>(keys: [NearKey], _ write: () async throws -> R) async throws -> R {
        for key in keys { store.invalidate(key, fromServer: false) }
        defer { for key in keys { store.invalidate(key, fromServer: false) } }
        return try await write()
    }
}

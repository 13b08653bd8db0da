import BaldurCache
import Hummingbird

/// Hummingbird's key-value store (`PersistDriver`: sessions, one-time
/// tokens) on a BaldurCache adapter, so that they live in the same Redis,
/// under the same prefix, readable from Python Baldur.
///
/// It is a file to copy, not a product of the library: a conformance in
/// BaldurCache would make every user resolve and build Hummingbird (see
/// "Hummingbird's PersistDriver" in the GettingStarted article).
struct BaldurPersistDriver: PersistDriver {
    let cache: RedisCacheAdapter

    /// `SET key json NX [EX|PX]`; an existing key is `PersistError.duplicate`.
    func create<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        guard try await cache.setnx(key, value, ttl: expires) else { throw PersistError.duplicate }
    }

    /// `SET key json EX|PX`, or, without `expires`, `SET key json KEEPTTL`:
    /// the driver contract keeps an existing expiry (Redis 6 and later).
    func set<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        if let expires {
            try await cache.set(key, value, ttl: expires)
            return
        }
        let json = try cache.jsonCoders.encoder.encode(value)
        try await cache.rawClient.send("SET", RedisArgument(cache.keyPrefix.resolve() + key), .bytes(Array(json)), "KEEPTTL")
    }

    /// `GET`; a value that is not an `Object` reads as `nil`, as the contract asks.
    func get<Object: Codable & Sendable>(key: String, as type: Object.Type) async throws -> Object? {
        do {
            return try await cache.get(key, as: type)
        } catch let error as RedisError where error.code == .decoding {
            return nil
        }
    }

    /// `GET`, then `PTTL`.
    func getWithTTL<Object: Codable & Sendable>(key: String, as type: Object.Type) async throws -> (object: Object, ttl: Duration?)? {
        guard let object = try await get(key: key, as: type) else { return nil }
        return (object, try await cache.lifetime(of: key).timeToLive)
    }

    /// `DEL`.
    func remove(key: String) async throws {
        try await cache.delete(key)
    }
}

/// The reads a near cache serves (`get`, `mget`, `hgetall`, and `hget`,
/// `exists` from what those kept), written once for the sync and async
/// calls: each read looks in memory first (`lookup`), sends what it must,
/// and keeps the answer against the placeholder it left (`keep`).
/// `@inline(never)`: async callers must not inline a typed-throwing
/// decoder (see ``CacheCall``).
extension RedisCacheAdapter {
    /// The outcome of looking in memory.
    enum NearRead<Value> {
        /// Served from memory.
        case answered(Value)
        /// Ask Redis; keep the answer with this ticket (`nil`: do not keep it).
        case fetch(NearCacheStore.Ticket?)
    }

    // MARK: GET

    /// What the near cache has for a `get`. Not generic: a generic enum
    /// returned from here cost a run-time metadata lookup (about 320
    /// instructions) on every hit; the caller decodes.
    enum NearGet {
        /// Kept: the bytes (`nil` for a missing key) and their JSON, decoded once.
        case kept([UInt8]?, decoded: JSONValue?)
        /// Ask Redis; keep the answer with this ticket (`nil`: do not keep it).
        case fetch(NearCacheStore.Ticket?)
    }

    func nearLookup(get full: NearKey, in near: NearCache) -> NearGet {
        guard near.tracks(full.prefix) else { return .fetch(nil) }
        switch near.store.lookup(full) {
        case .hit(.string(let bytes), let decoded):
            rawClient.telemetry.cacheLookup("get", hits: bytes == nil ? 0 : 1, misses: bytes == nil ? 1 : 0)
            return .kept(bytes, decoded: decoded)
        case .hit(.hash, _):
            return .fetch(nil)  // a hash: Redis answers WRONGTYPE
        case .miss(let ticket):
            return .fetch(ticket)
        }
    }

    /// `GET` and `PTTL` of `full`: the value, and how long Redis keeps it.
    static func fetchCommands(_ command: RedisArgument, _ full: NearKey) -> [[RedisArgument]] {
        [[command, full.storageKey], ["PTTL", full.storageKey]]
    }

    /// A `PTTL` reply as a lifetime: `nil` for a key without expiry.
    static func lifetime(_ reply: RedisReply) -> Duration? {
        guard case .integer(let milliseconds) = reply, milliseconds >= 0 else { return nil }
        return .milliseconds(milliseconds)
    }

    @inline(never)
    @_specialize(where T == JSONValue)
    func nearKeep<T: Decodable>(get replies: [RedisReply], key: String, ticket: NearCacheStore.Ticket?, as type: T.Type, in near: NearCache) throws(RedisError) -> T? {
        guard replies.count == 2 else { throw RedisError(.protocolError, "GET and PTTL returned \(replies.count) replies") }
        let bytes = try replies[0].throwingServerError().bytes
        rawClient.telemetry.cacheLookup("get", hits: bytes == nil ? 0 : 1, misses: bytes == nil ? 1 : 0)
        let value: T?
        do { value = try bytes.map { bytes throws(RedisError) in try jsonCoders.decode(bytes, as: T.self, key: key) } } catch {
            near.store.abandon(ticket)
            throw error
        }
        near.store.store(.string(bytes), decoded: value as? JSONValue, expiresIn: Self.lifetime(replies[1]), for: ticket)
        return value
    }

    // MARK: MGET

    /// The keys found in memory, decoded, and the tickets of the others.
    @inline(never)
    @_specialize(where T == JSONValue)
    func nearLookup<T: Decodable>(
        mget keys: [String], prefix: String, as type: T.Type, in near: NearCache
    ) throws(RedisError) -> (found: [String: T], missing: [(key: String, ticket: NearCacheStore.Ticket?)]) {
        var found: [String: T] = [:]
        var missing: [(key: String, ticket: NearCacheStore.Ticket?)] = []
        guard near.tracks(prefix) else { return ([:], keys.map { ($0, nil) }) }
        for key in keys {
            switch near.store.lookup(NearKey(prefix: prefix, key: key)) {
            case .hit(.string(let bytes), let decoded):
                if let value = try decode(bytes, decoded, key: key, as: type) { found[key] = value }
            case .hit(.hash, _):
                missing.append((key, nil))
            case .miss(let ticket):
                missing.append((key, ticket))
            }
        }
        rawClient.telemetry.cacheLookup("mget", hits: found.count, misses: 0)
        return (found, missing)
    }

    @inline(never)
    @_specialize(where T == JSONValue)
    func nearKeep<T: Decodable>(
        mget pipelined: [RedisReply], missing: [(key: String, ticket: NearCacheStore.Ticket?)], prefix: String, into found: inout [String: T], in near: NearCache
    ) throws(RedisError) {
        guard pipelined.count == missing.count + 1 else { throw RedisError(.protocolError, "MGET and PTTL returned \(pipelined.count) replies") }
        let replies = try pipelined[0].throwingServerError().expectArray("MGET")
        var hits = 0
        do {
            for (index, (key, ticket)) in missing.enumerated() {
                let bytes = index < replies.count ? replies[index].bytes : nil
                let value = try bytes.map { bytes throws(RedisError) in try jsonCoders.decode(bytes, as: T.self, key: key) }
                if ticket == nil { near.store.readWithoutKeeping(NearKey(prefix: prefix, key: key)) }
                near.store.store(.string(bytes), decoded: value as? JSONValue, expiresIn: Self.lifetime(pipelined[index + 1]), for: ticket)
                if let value {
                    found[key] = value
                    hits += 1
                }
            }
        } catch {
            for (_, ticket) in missing { near.store.abandon(ticket) }
            throw error
        }
        rawClient.telemetry.cacheLookup("mget", hits: hits, misses: missing.count - hits)
    }

    /// An `mget` through the near cache: answered from memory, or the one
    /// call that fetches what memory lacks.
    enum NearMget<Value> {
        case answered([String: Value])
        /// Run this call; `keys` is how many it asks Redis for.
        case fetch(CacheCall<[String: Value]>, keys: Int)
    }

    /// The near cache's part of `mget`, for both APIs: the keys found in
    /// memory, and for the rest `MGET` plus a `PTTL` each, kept on arrival
    /// (or a plain `MGET` when nothing can be kept: tracking is down, or
    /// only hashes were found). A failed fetch forgets its placeholders.
    @inline(never)
    @_specialize(where T == JSONValue)
    func nearMget<T: Decodable>(_ keys: [String], as type: T.Type, in near: NearCache) throws(RedisError) -> NearMget<T> {
        let prefix = keyPrefix.resolve()
        let (found, missing) = try nearLookup(mget: keys, prefix: prefix, as: type, in: near)
        guard !missing.isEmpty else { return .answered(found) }
        if missing.allSatisfy({ $0.ticket == nil }) {
            let keys = missing.map(\.key)
            let settle = { for key in keys { near.store.readWithoutKeeping(NearKey(prefix: prefix, key: key)) } }
            let call = mgetCall(keys, as: type).map { fetched in
                settle()
                return found.merging(fetched) { kept, _ in kept }
            }
            return .fetch(call.onFailure(settle), keys: keys.count)
        }
        let call = CacheCall(.pipeline(Self.mgetCommands(missing, prefix: prefix))) { reply throws(RedisError) in
            var found = found
            try self.nearKeep(mget: reply.array ?? [], missing: missing, prefix: prefix, into: &found, in: near)
            return found
        }
        return .fetch(call.onFailure { for (_, ticket) in missing { near.store.abandon(ticket) } }, keys: missing.count)
    }

    /// `MGET` of the missing keys' storage keys, then `PTTL` of each.
    static func mgetCommands(_ missing: [(key: String, ticket: NearCacheStore.Ticket?)], prefix: String) -> [[RedisArgument]] {
        let keys = missing.map { RedisArgument(prefix: prefix, key: $0.key) }
        return [["MGET"] + keys] + keys.map { ["PTTL", $0] }
    }

    // MARK: HGETALL, HGET, EXISTS

    @inline(never)
    func nearLookup<T: Decodable>(hgetall full: NearKey, name: String, as type: T.Type, in near: NearCache) throws(RedisError) -> NearRead<[String: T]> {
        guard near.tracks(full.prefix) else { return .fetch(nil) }
        switch near.store.lookup(full) {
        case .hit(.hash(let fields), _): return .answered(try decode(fields, name: name, as: type))
        case .hit(.string, _): return .fetch(nil)
        case .miss(let ticket): return .fetch(ticket)
        }
    }

    @inline(never)
    func nearKeep<T: Decodable>(hgetall replies: [RedisReply], name: String, ticket: NearCacheStore.Ticket?, as type: T.Type, in near: NearCache) throws(RedisError) -> [String: T] {
        guard replies.count == 2 else { throw RedisError(.protocolError, "HGETALL and PTTL returned \(replies.count) replies") }
        let flat = try replies[0].throwingServerError().expectArray("HGETALL")
        var fields: [String: [UInt8]] = [:]
        var index = 0
        while index + 1 < flat.count {
            let field = flat[index].string ?? String(decoding: flat[index].bytes ?? [], as: UTF8.self)
            if let value = flat[index + 1].bytes { fields[field] = value }
            index += 2
        }
        do {
            let decoded = try decode(fields, name: name, as: type)
            near.store.store(.hash(fields), expiresIn: Self.lifetime(replies[1]), for: ticket)
            return decoded
        } catch {
            near.store.abandon(ticket)
            throw error
        }
    }

    /// `hget` from a hash kept whole; `nil` when not kept.
    @inline(never)
    func nearAnswer<T: Decodable>(hget full: NearKey, name: String, field: String, as type: T.Type, in near: NearCache) throws(RedisError) -> T?? {
        guard near.tracks(full.prefix), case .hit(.hash(let fields), _) = near.store.lookup(full, placeholder: false) else { return nil }
        return .some(try fields[field].map { bytes throws(RedisError) in try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]") })
    }

    /// `exists` from what is kept; `nil` when nothing is.
    @inline(never)
    func nearAnswer(exists full: NearKey, in near: NearCache) -> Bool? {
        guard near.tracks(full.prefix) else { return nil }
        switch near.store.lookup(full, placeholder: false) {
        case .hit(.string(let bytes), _): return bytes != nil
        case .hit(.hash(let fields), _): return !fields.isEmpty
        case .miss: return nil
        }
    }

    // MARK: Decoding

    func decode<T: Decodable>(_ bytes: [UInt8]?, _ decoded: JSONValue?, key: String, as type: T.Type) throws(RedisError) -> T? {
        guard let bytes else { return nil }
        if let decoded, let value = decoded as? T { return value }
        return try jsonCoders.decode(bytes, as: T.self, key: key)
    }

    private func decode<T: Decodable>(_ fields: [String: [UInt8]], name: String, as type: T.Type) throws(RedisError) -> [String: T] {
        var result: [String: T] = [:]
        for (field, bytes) in fields { result[field] = try jsonCoders.decode(bytes, as: T.self, key: "\(name)[\(field)]") }
        return result
    }
}

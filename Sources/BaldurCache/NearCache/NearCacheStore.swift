import DequeModule
import Logging
import Synchronization

/// How a ``RedisCacheAdapter`` keeps the values it read in process memory
/// (its near cache), served until Redis says they changed.
///
/// Off unless given to the adapter. Bounded by entries and bytes; the oldest
/// entries are evicted first.
public struct NearCacheConfiguration: Sendable, Equatable {
    /// The most entries kept (1...10,000,000).
    public var maxEntries: Int
    /// The most bytes kept, keys and values counted, plus 64 per entry
    /// (1 KiB ... 1 TiB).
    public var maxBytes: Int
    /// When set, an entry is served for at most this long after it was read
    /// from Redis, invalidated or not (1 ms ... 100 years).
    public var localTTL: Duration?

    /// A near cache of at most `maxEntries` entries and `maxBytes` bytes.
    public init(maxEntries: Int = 10_000, maxBytes: Int = 64 << 20, localTTL: Duration? = nil) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.localTTL = localTTL
    }

    func validate() throws(RedisError) {
        guard (1...10_000_000).contains(maxEntries) else {
            throw RedisError(.invalidConfiguration, "near cache maxEntries must be 1...10,000,000, not \(maxEntries)")
        }
        guard (1024...(1 << 40)).contains(maxBytes) else {
            throw RedisError(.invalidConfiguration, "near cache maxBytes must be 1 KiB ... 1 TiB, not \(maxBytes)")
        }
        if let localTTL {
            _ = try localTTL.checked("near cache localTTL", in: .milliseconds(1)...Duration.longestAccepted, code: .invalidConfiguration)
        }
    }
}

/// What a near cache has done since it was made.
public struct NearCacheStatistics: Sendable, Equatable {
    /// Reads served from memory.
    public var hits = 0
    /// Reads that went to Redis (the cache bypassed included).
    public var misses = 0
    /// Entries dropped because Redis said their key changed (a flush counts each entry).
    public var invalidations = 0
    /// Entries dropped to stay within the bounds.
    public var evictions = 0
    /// Entries now.
    public var entries = 0
    /// Bytes now, as ``NearCacheConfiguration/maxBytes`` counts them.
    public var bytes = 0
    /// Whether Redis is tracking for this cache now: `false` while the
    /// invalidation connection is down, when every read goes to Redis.
    public var isTracking = false
}

/// A storage key as the near cache keys it: prefix and key apart, so a
/// lookup hashes both without building the storage key.
struct NearKey: Hashable, Sendable {
    let prefix: String
    let key: String

    /// The storage key, for a command.
    var storageKey: RedisArgument { RedisArgument(prefix: prefix, key: key) }

    var byteCount: Int { prefix.utf8.count + key.utf8.count }

    init(prefix: String, key: String) {
        self.prefix = prefix
        self.key = key
    }

    /// `storageKey` split after the longest of `prefixes` it starts with; `nil` when none.
    init?(splitting storageKey: String, prefixes: [String]) {
        guard let prefix = prefixes.filter({ storageKey.hasPrefix($0) }).max(by: { $0.utf8.count < $1.utf8.count }) else { return nil }
        self.init(prefix: prefix, key: String(decoding: storageKey.utf8.dropFirst(prefix.utf8.count), as: UTF8.self))
    }
}

/// The near cache's store: entries by storage key, placeholders for reads
/// in flight, and the rules that keep a stale value from being stored.
///
/// The race it closes: a read's reply and the invalidation of its key
/// travel on different connections. A read first leaves a placeholder; an
/// invalidation removes it; the reply is stored only if the placeholder is
/// still there. Two reads of one key in flight share the placeholder, and
/// if their replies differ (a write fell between them, its invalidation
/// still on its way) neither is kept.
///
/// Concurrent readers add a second rule: a reply that is not kept drops
/// whatever is kept or pending for its key. Replies on different
/// connections cannot be ordered against each other: a read whose
/// placeholder was replaced (or that left none) may return a newer value
/// than the reads of the placeholder that replaced it, whose server-side
/// `GET` ran earlier. Keeping theirs would let the caller who just saw the
/// newer value read the older one from memory next, until the write's
/// invalidation arrives. So once any reply for a key has been handed to a
/// caller, every value kept for that key was read by a request sent after
/// that reply arrived (or is that reply): no reader sees a key go back.
final class NearCacheStore: Sendable {
    /// What is kept for a key.
    enum Value: Sendable, Equatable {
        /// A `GET`: the bytes, or `nil` for a missing key.
        case string([UInt8]?)
        /// An `HGETALL`: every field (empty for a missing key).
        case hash([String: [UInt8]])

        var byteCount: Int {
            switch self {
            case .string(let bytes): bytes?.count ?? 0
            case .hash(let fields): fields.reduce(0) { $0 + $1.key.utf8.count + $1.value.count + 16 }
            }
        }
    }

    /// A read that went to Redis: its placeholder's token, to store the reply against.
    struct Ticket: Sendable {
        let key: NearKey
        let token: UInt64
    }

    /// A value kept, decoded once when it is JSON, until `expires`
    /// (``Monotonic`` nanoseconds; `UInt64.max` for never). Not a
    /// `ContinuousClock.Instant`: that type's layout is the standard
    /// library's to change, so every copy of an entry holding one went
    /// through run-time type metadata and value witnesses (about 500
    /// instructions a hit).
    private struct Kept {
        let value: Value
        let decoded: JSONValue?
        let expires: UInt64
    }

    private enum Content {
        case pending
        case value(Kept)
    }

    private struct Entry {
        var content: Content
        let token: UInt64
        var bytes: Int
    }

    private struct State {
        var entries: [NearKey: Entry] = [:]
        /// Keys in the order they were stored, with the token stored; stale
        /// items (the key since dropped or stored again) are skipped.
        var order: Deque<(key: NearKey, token: UInt64)> = []
        var bytes = 0
        var tracking = false
        var nextToken: UInt64 = 1
        var statistics = NearCacheStatistics()
    }

    static let entryOverhead = 64

    let configuration: NearCacheConfiguration
    private let state = PlainMutex(State())
    private let meters: Telemetry.NearCacheMeters?
    /// Bumped whenever a kept value leaves the store: the threads' copies
    /// are served only while it stays what it was when they were made
    /// (see ``NearCacheThreadCopies``).
    private let generation = Atomic<UInt64>(0)
    /// This store among the threads' copies.
    private let id = NearCacheStore.nextID.add(1, ordering: .relaxed).newValue
    private static let nextID = Atomic<UInt64>(0)
    /// Hits served from a thread's copies.
    private let copiedHits = StripedCounter()

    init(configuration: NearCacheConfiguration, meters: Telemetry.NearCacheMeters?) {
        self.configuration = configuration
        self.meters = meters
    }

    /// The value kept for `key`, or a ticket to read it from Redis with
    /// (`nil` while the cache is bypassed).
    enum Lookup {
        case hit(Value, decoded: JSONValue?)
        case miss(Ticket?)
    }

    /// `placeholder: false` looks without leaving one (a read whose answer is not kept).
    func lookup(_ key: NearKey, placeholder: Bool = true) -> Lookup {
        let generation = self.generation.load(ordering: .acquiring)
        let copies = NearCacheThreadCopies.current
        let (copy, stable) = copies.copy(of: key, store: id, generation: generation)
        if let copy, copy.expires == .max || copy.expires > Monotonic.now() {
            copiedHits.increment(slot: copies.slot)
            meters?.hits.increment()
            return .hit(copy.value, decoded: copy.decoded)
        }
        var found: Kept?
        let result = state.withLock { state -> Lookup in
            guard state.tracking else {
                state.statistics.misses += 1
                return .miss(nil)
            }
            if let entry = state.entries[key] {
                switch entry.content {
                case .value(let kept):
                    if kept.expires != .max, kept.expires <= Monotonic.now() {
                        remove(key, from: &state)
                    } else {
                        state.statistics.hits += 1
                        found = kept
                        return .hit(kept.value, decoded: kept.decoded)
                    }
                case .pending:
                    // Another read of this key is in flight: share its placeholder.
                    state.statistics.misses += 1
                    return .miss(placeholder ? Ticket(key: key, token: entry.token) : nil)
                }
            }
            state.statistics.misses += 1
            guard placeholder else { return .miss(nil) }
            let token = state.nextToken
            state.nextToken += 1
            state.entries[key] = Entry(content: .pending, token: token, bytes: 0)
            return .miss(Ticket(key: key, token: token))
        }
        if stable, let found {
            // The second read at this generation: worth a copy of this thread's own.
            copies.keep(key, found.value, decoded: found.decoded, expires: found.expires, store: id, generation: generation)
        }
        if let meters {
            if case .hit = result { meters.hits.increment() } else { meters.misses.increment() }
        }
        return result
    }

    /// Keeps `value`, read with `ticket`, unless the key was invalidated
    /// since the ticket was given, or another read with the same ticket
    /// stored a different value.
    /// `expiresIn`: the key's TTL in Redis when it has one (`PTTL`), so an
    /// expired key is never served while Redis' expiry of it (and its
    /// invalidation) lags.
    func store(_ value: Value, decoded: JSONValue? = nil, expiresIn: Duration? = nil, for ticket: Ticket?) {
        guard let ticket else { return }
        let evicted = state.withLock { state -> Int in
            guard let entry = state.entries[ticket.key] else { return 0 }
            guard entry.token == ticket.token else {
                // The placeholder was replaced: this reply may be newer than its replacement's (see the type's doc).
                remove(ticket.key, from: &state)
                return 0
            }
            switch entry.content {
            case .pending:
                let bytes = ticket.key.byteCount + value.byteCount + Self.entryOverhead
                guard bytes <= configuration.maxBytes else {
                    remove(ticket.key, from: &state)
                    return 0
                }
                let lifetimes = [configuration.localTTL, expiresIn].compactMap { $0 }
                let expires = Monotonic.deadline(after: lifetimes.min())
                state.entries[ticket.key] = Entry(content: .value(Kept(value: value, decoded: decoded, expires: expires)), token: entry.token, bytes: bytes)
                state.bytes += bytes
                state.order.append((ticket.key, entry.token))
                return evict(&state)
            case .value(let kept):
                // Two reads, two answers: a write fell between them. Keep neither.
                if kept.value != value { remove(ticket.key, from: &state) }
                return 0
            }
        }
        if evicted > 0 { meters?.evictions.increment(by: Int64(evicted)) }
    }

    /// A reply for `key` read from Redis and not kept (the cache bypassed,
    /// or a read that leaves no placeholder: `HGET`, `EXISTS`): drops what
    /// is kept or pending for the key, which may be older (see the type's doc).
    func readWithoutKeeping(_ key: NearKey) {
        state.withLock { state in remove(key, from: &state) }
    }

    /// Forgets a read that failed: its placeholder, if it is still there.
    func abandon(_ ticket: Ticket?) {
        guard let ticket else { return }
        state.withLock { state in
            guard let entry = state.entries[ticket.key], entry.token == ticket.token, case .pending = entry.content else { return }
            state.entries.removeValue(forKey: ticket.key)
        }
    }

    /// Drops what is kept for `key` (and any placeholder, so a read in flight stores nothing).
    func invalidate(_ key: NearKey, fromServer: Bool) {
        let dropped = state.withLock { state -> Bool in
            guard state.entries[key] != nil else { return false }
            remove(key, from: &state)
            if fromServer { state.statistics.invalidations += 1 }
            return true
        }
        if dropped, fromServer { meters?.invalidations.increment() }
    }

    /// Drops everything. `tracking`, when given, turns serving on or off.
    func invalidateAll(fromServer: Bool, tracking: Bool? = nil) {
        let dropped = state.withLock { state -> Int in
            let count = state.entries.count
            state.entries.removeAll()
            state.order.removeAll()
            state.bytes = 0
            if fromServer { state.statistics.invalidations += count }
            if let tracking { state.tracking = tracking }
            generation.add(1, ordering: .releasing)
            return count
        }
        if dropped > 0, fromServer { meters?.invalidations.increment(by: Int64(dropped)) }
    }

    var statistics: NearCacheStatistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.hits += copiedHits.total
            statistics.entries = state.entries.count
            statistics.bytes = state.bytes
            statistics.isTracking = state.tracking
            return statistics
        }
    }

    private func remove(_ key: NearKey, from state: inout State) {
        guard let entry = state.entries.removeValue(forKey: key) else { return }
        state.bytes -= entry.bytes
        if case .value = entry.content { generation.add(1, ordering: .releasing) }
    }

    /// Evicts the oldest entries until within bounds; returns how many.
    private func evict(_ state: inout State) -> Int {
        var evicted = 0
        while state.entries.count > configuration.maxEntries || state.bytes > configuration.maxBytes, let oldest = state.order.popFirst() {
            guard let entry = state.entries[oldest.key], entry.token == oldest.token, case .value = entry.content else { continue }
            remove(oldest.key, from: &state)
            evicted += 1
        }
        // Stale items pile up when keys are invalidated and read again; drop them before they outgrow the entries.
        if state.order.count > 2 * max(state.entries.count, 1024) {
            state.order = Deque(state.order.filter { state.entries[$0.key]?.token == $0.token })
        }
        state.statistics.evictions += evicted
        return evicted
    }
}

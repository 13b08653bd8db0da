#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Each thread's own copies of the near cache's hot entries, so that a hit
/// on a key many threads read writes no memory another thread reads.
///
/// Why: a hit under the store's one lock writes the lock word, the hit
/// counter and the value's reference count, all shared. Two threads reading
/// one hot key moved those cache lines between the cores on every hit: CPU
/// per hit went from 0.2 µs on one thread to 0.6-0.7 µs on two, and an async
/// hit at 64 tasks cost 0.7-1.0 µs (`scripts/bench.sh --only near`).
///
/// The rule that keeps a copy exact: the store bumps its `generation`
/// whenever a kept value leaves it (invalidated, evicted, expired, replaced,
/// tracking lost). A copy is tagged with the generation read before the
/// store was consulted and served only while the generation is unchanged,
/// so it is always a value the store holds at that moment. A thread copies
/// an entry only on its second read with the generation unchanged (a store
/// under writes stays on the locked path, which costs a generation load).
///
/// Bounded: at most ``capacity`` entries (one per slot; a key whose slot
/// is taken replaces the copy there) of at most ``largestValue`` bytes
/// per thread, for the ``storesPerThread`` stores it used last.
final class NearCacheThreadCopies {
    static let capacity = 64  // a power of two
    static let largestValue = 4096
    static let storesPerThread = 4

    /// A copy: its own storage, so returning it retains nothing another thread touches.
    struct Copy {
        let value: NearCacheStore.Value
        let decoded: JSONValue?
        let expires: UInt64
    }

    /// One store's copies: direct-mapped by a cheap hash of the key (a
    /// `Dictionary` lookup hashed both strings with SipHash, 530
    /// instructions, more than the whole locked lookup it replaced).
    struct Table {
        var store: UInt64
        var generation: UInt64
        var slots: [(key: NearKey, copy: Copy)?] = Array(repeating: nil, count: NearCacheThreadCopies.capacity)
        var used = 0

        static func slot(of key: NearKey) -> Int {
            // FNV-1a over the key's bytes, read in place when the string has them contiguous.
            func fnv<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> Int {
                var hash: UInt32 = 2_166_136_261
                for byte in bytes { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
                return Int(hash & UInt32(NearCacheThreadCopies.capacity - 1))
            }
            return key.key.utf8.withContiguousStorageIfAvailable { fnv($0) } ?? fnv(key.key.utf8)
        }

        mutating func empty() {
            guard used > 0 else { return }
            for index in slots.indices { slots[index] = nil }
            used = 0
        }
    }

    /// This thread's slot in the stores' striped hit counters.
    let slot: Int
    // Only its own thread touches it: no exclusivity checks needed (they cost 76 instructions a hit).
    @exclusivity(unchecked) private var tables: [Table] = []

    private init(slot: Int) { self.slot = slot }

    /// The calling thread's copies, made on first use and freed when it exits.
    static var current: NearCacheThreadCopies { perThread.current }

    private static let nextSlot = Atomic<Int>(0)
    private static let perThread = PerThread { NearCacheThreadCopies(slot: nextSlot.add(1, ordering: .relaxed).newValue) }

    /// The copy of `key` for `store` at `generation`; the table is emptied
    /// when the generation moved. `stable`: whether the table was already at
    /// `generation` (a copy may be made).
    func copy(of key: NearKey, store: UInt64, generation: UInt64) -> (copy: Copy?, stable: Bool) {
        guard let index = tables.firstIndex(where: { $0.store == store }) else {
            if tables.count == Self.storesPerThread { tables.removeFirst() }
            tables.append(Table(store: store, generation: generation))
            return (nil, false)
        }
        if tables[index].generation != generation {
            tables[index].generation = generation
            tables[index].empty()
            return (nil, false)
        }
        guard let slot = tables[index].slots[Table.slot(of: key)], slot.key == key else { return (nil, true) }
        return (slot.copy, true)
    }

    /// Keeps a copy of `value` for `key`, tagged with `generation`.
    func keep(_ key: NearKey, _ value: NearCacheStore.Value, decoded: JSONValue?, expires: UInt64, store: UInt64, generation: UInt64) {
        guard value.byteCount <= Self.largestValue,
              let index = tables.firstIndex(where: { $0.store == store }), tables[index].generation == generation else { return }
        let slot = Table.slot(of: key)
        if tables[index].slots[slot] == nil { tables[index].used += 1 }
        tables[index].slots[slot] = (key, Copy(value: value.unshared, decoded: decoded?.unshared, expires: expires))
    }
}

/// Hits counted in stripes, a thread's in a cache line of its own.
///
/// Stored inline in its owner (noncopyable): an array of stripe objects
/// cost a retain and release of the array and of the stripe per hit,
/// reference counts of objects every thread touches.
struct StripedCounter: ~Copyable, Sendable {
    /// 128 bytes from one stripe to the next (two cache lines: the
    /// adjacent-line prefetcher pairs them).
    private typealias Padding = (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)
    private let stripe0 = Atomic<Int>(0)
    private let padding0: Padding = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private let stripe1 = Atomic<Int>(0)
    private let padding1: Padding = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private let stripe2 = Atomic<Int>(0)
    private let padding2: Padding = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private let stripe3 = Atomic<Int>(0)
    private let padding3: Padding = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    init() {}

    func increment(slot: Int) {
        switch slot & 3 {
        case 0: stripe0.add(1, ordering: .relaxed)
        case 1: stripe1.add(1, ordering: .relaxed)
        case 2: stripe2.add(1, ordering: .relaxed)
        default: stripe3.add(1, ordering: .relaxed)
        }
    }

    var total: Int {
        stripe0.load(ordering: .relaxed) + stripe1.load(ordering: .relaxed) + stripe2.load(ordering: .relaxed) + stripe3.load(ordering: .relaxed)
    }
}

extension NearCacheStore.Value {
    /// The same value in storage of its own.
    var unshared: Self {
        switch self {
        case .string(let bytes): .string(bytes.map { bytes in bytes.withUnsafeBufferPointer { Array($0) } })
        case .hash(let fields): .hash(Dictionary(uniqueKeysWithValues: fields.map { ($0.key, $0.value.withUnsafeBufferPointer { Array($0) }) }))
        }
    }
}

extension JSONValue {
    /// The same value with its outermost storage its own (what a caller retains).
    var unshared: Self {
        switch self {
        case .string(let text): .string(String(decoding: Array(text.utf8), as: UTF8.self))
        case .array(let elements): .array(elements.withUnsafeBufferPointer { Array($0) })
        case .object(let members): .object(Dictionary(uniqueKeysWithValues: members.map { ($0.key, $0.value) }))
        default: self
        }
    }
}

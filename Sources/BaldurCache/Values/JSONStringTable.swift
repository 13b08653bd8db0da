/// The short strings (at most 15 UTF-8 bytes: member names, enum-like
/// values) this thread has read before, so that reading one again makes no
/// new `String`.
///
/// Records of one shape repeat their member names in every value: an `mget`
/// of 100 records reads the same five names 100 times. Making a `String`
/// from bytes validates them and builds it (about 150 instructions for a
/// short one); finding it here compares two words. Strings of up to 15 bytes
/// are stored inline in the `String` value, so an entry owns no memory and a
/// copy of it costs nothing more.
///
/// One table per thread (a `pthread` key), direct-mapped, 256 entries, the
/// newest string winning its slot; only its own thread touches it, so it
/// needs no lock. A table holds only strings already validated, under their
/// exact bytes and length, so a hit is the string those bytes make.
final class JSONStringTable {
    /// Up to 15 bytes, packed: bytes 0-7 in `low`, 8-14 in `high`'s low
    /// seven bytes, the length in `high`'s top byte.
    struct Packed: Equatable {
        var low: UInt64 = 0
        var high: UInt64 = 0
    }

    private struct Entry {
        var packed = Packed()
        var text = ""  // the empty string, which the empty key also stands for
    }

    static let maxLength = 15
    private static let slots = 256
    private let entries: UnsafeMutablePointer<Entry>

    private init() {
        entries = .allocate(capacity: Self.slots)
        entries.initialize(repeating: Entry(), count: Self.slots)
    }

    deinit {
        entries.deinitialize(count: Self.slots)
        entries.deallocate()
    }

    /// `bytes` (at most ``maxLength``) packed as a key. When at least 16
    /// bytes may be read from `bytes.baseAddress` (`readable`), two word
    /// loads and masks do what the byte loop does.
    @inline(__always)
    static func pack(_ bytes: UnsafeBufferPointer<UInt8>, readable: Int) -> Packed {
        if readable >= 16, let base = bytes.baseAddress {
            let count = bytes.count
            var low = UInt64(littleEndian: UnsafeRawPointer(base).loadUnaligned(as: UInt64.self))
            var high = UInt64(littleEndian: UnsafeRawPointer(base + 8).loadUnaligned(as: UInt64.self))
            if count < 8 {
                low &= (1 &<< UInt64(8 &* count)) &- 1
                high = 0
            } else {
                high &= (1 &<< UInt64(8 &* (count &- 8))) &- 1
            }
            return Packed(low: low, high: high | UInt64(count) &<< 56)
        }
        var packed = Packed(low: 0, high: UInt64(bytes.count) << 56)
        var index = 0
        while index < bytes.count && index < 8 {
            packed.low |= UInt64(bytes[index]) << (8 * UInt64(index))
            index += 1
        }
        while index < bytes.count {
            packed.high |= UInt64(bytes[index]) << (8 * UInt64(index - 8))
            index += 1
        }
        return packed
    }

    /// The string of `bytes` (at most ``maxLength``), from the table or made
    /// by `make` (which validates) and kept; `nil` when `make` refuses them.
    /// `readable`: how many bytes from `bytes.baseAddress` may be read.
    @inline(__always)
    func string(_ bytes: UnsafeBufferPointer<UInt8>, readable: Int, make: (UnsafeBufferPointer<UInt8>) -> String?) -> String? {
        let packed = Self.pack(bytes, readable: readable)
        let slot = Int(truncatingIfNeeded: (packed.low &* 0x9E37_79B9_7F4A_7C15 ^ packed.high &* 0xC2B2_AE3D_27D4_EB4F) >> 56)
        if entries[slot].packed == packed { return entries[slot].text }
        guard let text = make(bytes) else { return nil }
        entries[slot] = Entry(packed: packed, text: text)
        return text
    }

    /// The calling thread's table, made on first use and freed when the thread exits.
    static var current: JSONStringTable { perThread.current }

    private static let perThread = PerThread { JSONStringTable() }
}

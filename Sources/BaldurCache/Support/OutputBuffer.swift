#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A growable byte buffer written through a raw pointer: what RESP requests
/// and JSON values are written into.
///
/// `[UInt8].append` checks the array's uniqueness and capacity on every call,
/// and a request is a dozen small appends per argument (callgrind: a third of
/// a pipelined `GET`'s cost). Here a writer reserves once and then stores
/// bytes; the buffer is never shared, so nothing else needs checking.
struct OutputBuffer: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    /// The number of bytes written.
    private(set) var count = 0

    init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// Makes room for `extra` more bytes, so the `unchecked` writes after it stay in bounds.
    @inline(__always)
    mutating func reserve(_ extra: Int) {
        if extra > capacity &- count { grow(to: count + extra) }
    }

    @inline(never)
    private mutating func grow(to needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    /// Forgets the bytes written; a buffer that grew past `keepingCapacityUpTo`
    /// shrinks back to it, so one large request does not pin memory.
    mutating func removeAll(keepingCapacityUpTo limit: Int) {
        count = 0
        if capacity > limit {
            base.deallocate()
            capacity = max(limit, 16)
            base = .allocate(capacity: capacity)
        }
    }

    /// Forgets the first `prefix` bytes (written out), keeping the rest in order.
    mutating func removeFirst(_ prefix: Int) {
        precondition(prefix >= 0 && prefix <= count, "removing more bytes than the buffer holds")
        memmove(base, base + prefix, count - prefix)
        count -= prefix
    }

    // MARK: Writes

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        reserve(1)
        appendUnchecked(byte)
    }

    @inline(__always)
    mutating func append(_ first: UInt8, _ second: UInt8) {
        reserve(2)
        appendUnchecked(first)
        appendUnchecked(second)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        appendUnchecked(bytes)
    }

    /// Appends the UTF-8 bytes of `text`.
    mutating func append(utf8 text: String) {
        reserve(text.utf8.count)
        appendUnchecked(utf8: text)
    }

    /// Appends the decimal digits of `value` (RESP lengths, JSON integers).
    mutating func appendDecimal(_ value: UInt64) {
        reserve(Self.maxDecimalDigits)
        appendDecimalUnchecked(value)
    }

    /// Stores `byte` without checking capacity: only after ``reserve(_:)``.
    @inline(__always)
    mutating func appendUnchecked(_ byte: UInt8) {
        base[count] = byte
        count &+= 1
    }

    /// Stores `bytes` without checking capacity: only after ``reserve(_:)``.
    @inline(__always)
    mutating func appendUnchecked(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        memcpy(base + count, source, bytes.count)
        count &+= bytes.count
    }

    /// Stores the UTF-8 bytes of `text` without checking capacity: only after ``reserve(_:)``.
    @inline(__always)
    mutating func appendUnchecked(utf8 text: String) {
        text.withUTF8Bytes { appendUnchecked($0) }
    }

    /// The most digits ``appendDecimalUnchecked(_:)`` writes (`UInt64.max`).
    static let maxDecimalDigits = 20

    /// Stores the decimal digits of `value`: only after reserving ``maxDecimalDigits``.
    @inline(__always)
    mutating func appendDecimalUnchecked(_ value: UInt64) {
        let width = Self.decimalWidth(value)
        var rest = value
        var position = count &+ width
        repeat {
            position &-= 1
            base[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while rest > 0
        count &+= width
    }

    /// The number of decimal digits of `value`.
    @inline(__always)
    static func decimalWidth(_ value: UInt64) -> Int {
        var width = 1
        var threshold: UInt64 = 10
        while value >= threshold {
            width += 1
            if threshold > UInt64.max / 10 { break }
            threshold &*= 10
        }
        return width
    }

    // MARK: Reads

    /// Calls `body` with the bytes written so far.
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// A copy of the bytes written so far.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

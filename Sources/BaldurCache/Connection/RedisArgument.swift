/// One argument of a Redis command: text or raw bytes, sent binary-safe.
/// Two arguments are equal when they put the same bytes on the wire.
///
/// String and integer literals convert implicitly:
/// ```swift
/// try client.send("SET", "greeting", .bytes([0, 13, 10, 255]))
/// try client.send("EXPIRE", "greeting", 60)
/// ```
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    enum Storage: Sendable {
        case text(String)
        case bytes([UInt8])
        /// A key prefix and a key, written one after the other: the adapters'
        /// storage keys, without building the joined string on every call.
        case prefixed(String, String)
    }

    let storage: Storage

    /// An argument sent as the UTF-8 bytes of `text`.
    public init(_ text: String) { storage = .text(text) }

    /// An argument sent as the decimal digits of `value`.
    public init<I: BinaryInteger>(_ value: I) { storage = .text(String(value)) }

    /// An argument sent as these bytes, unchanged.
    public init(bytes: [UInt8]) { storage = .bytes(bytes) }

    /// An argument sent as these bytes, unchanged.
    public static func bytes(_ bytes: [UInt8]) -> RedisArgument { RedisArgument(bytes: bytes) }

    /// `prefix` then `key`, as one argument.
    init(prefix: String, key: String) {
        storage = prefix.isEmpty ? .text(key) : .prefixed(prefix, key)
    }

    /// A string literal is sent as its UTF-8 bytes.
    public init(stringLiteral value: String) { storage = .text(value) }

    /// An integer literal is sent as its decimal digits.
    public init(integerLiteral value: Int) { storage = .text(String(value)) }

    /// The number of bytes this argument puts on the wire.
    var byteCount: Int {
        switch storage {
        case .text(let text): return text.utf8.count
        case .bytes(let bytes): return bytes.count
        case .prefixed(let prefix, let key): return prefix.utf8.count + key.utf8.count
        }
    }

    /// Stores the argument's bytes into `buffer`, which must have room for ``byteCount`` more.
    @inline(__always)
    func appendUnchecked(to buffer: inout OutputBuffer) {
        switch storage {
        case .text(let text): buffer.appendUnchecked(utf8: text)
        case .bytes(let bytes): bytes.withUnsafeBytes { buffer.appendUnchecked($0) }
        case .prefixed(let prefix, let key):
            buffer.appendUnchecked(utf8: prefix)
            buffer.appendUnchecked(utf8: key)
        }
    }

    /// Calls `body` with the argument's bytes, without copying them.
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch storage {
        case .text(let text):
            return text.withUTF8Bytes(body)
        case .bytes(let bytes):
            return bytes.withUnsafeBytes(body)
        case .prefixed(let prefix, let key):
            // Joined on the stack: three arrays a call cost a cluster mget
            // three allocations a key (its slot, `ClusterSlot.of`).
            return prefix.withUTF8Bytes { prefix in
                key.withUTF8Bytes { key in
                    withUnsafeTemporaryAllocation(byteCount: prefix.count + key.count, alignment: 1) { joined in
                        joined.copyMemory(from: prefix)
                        UnsafeMutableRawBufferPointer(rebasing: joined[prefix.count...]).copyMemory(from: key)
                        return body(UnsafeRawBufferPointer(joined))
                    }
                }
            }
        }
    }

    public static func == (lhs: RedisArgument, rhs: RedisArgument) -> Bool {
        lhs.withBytes { left in rhs.withBytes { right in left.elementsEqual(right) } }
    }

    public func hash(into hasher: inout Hasher) {
        withBytes { hasher.combine(bytes: $0) }
    }

    /// The argument's bytes, as sent.
    var bytes: [UInt8] { withBytes { Array($0) } }

    /// `true` when this argument, as a command name in any letter case, is in `names` (upper-case).
    /// Upper-case names, the common spelling, are found without allocating.
    func isCommand(in names: Set<String>) -> Bool {
        switch storage {
        case .text(let text): return names.contains(text) || names.contains(text.uppercased())
        case .bytes, .prefixed: return names.contains(String(decoding: self.bytes, as: UTF8.self).uppercased())
        }
    }
}

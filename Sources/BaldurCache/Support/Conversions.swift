// Small helpers shared by the connection, the JSON writer and the lock.

extension String {
    /// Calls `body` with the string's UTF-8 bytes: in place where the string
    /// keeps them contiguous (native and small strings), from a copy otherwise.
    @inline(__always)
    func withUTF8Bytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let result = utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
        return Array(utf8).withUnsafeBytes(body)
    }

    /// The string with leading zeros up to `length` characters.
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}

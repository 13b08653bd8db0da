/// Writes commands in the RESP2 request format (an array of bulk strings),
/// the bytes hiredis' own `redisFormatCommandArgv` would produce.
///
/// hiredis 0.14 formats each command through `sdscatfmt` and two heap
/// buffers, about 2,600 instructions for a two-argument `GET` (callgrind):
/// more than it spends reading and parsing the reply. Writing the same
/// bytes into a buffer the connection reuses costs a fraction of that, and
/// hiredis still does all socket I/O and reply parsing.
enum RESPEncoding {
    /// Appends `*<count>\r\n` then `$<length>\r\n<bytes>\r\n` per argument,
    /// after reserving room for all of it once.
    ///
    /// - Returns: Where the first argument, the command's name, lies in
    ///   `buffer`, so it can be looked at as written (see ``SessionState``).
    @discardableResult
    static func append(_ arguments: [RedisArgument], to buffer: inout OutputBuffer) -> Range<Int> {
        // Per argument: '$', the length's digits, CRLF, the bytes, CRLF.
        var size = 1 + OutputBuffer.maxDecimalDigits + 2
        for argument in arguments { size += argument.byteCount + 5 + OutputBuffer.maxDecimalDigits }
        buffer.reserve(size)
        buffer.appendUnchecked(UInt8(ascii: "*"))
        buffer.appendDecimalUnchecked(UInt64(arguments.count))
        buffer.appendUnchecked(13)
        buffer.appendUnchecked(10)
        var name = buffer.count..<buffer.count
        for argument in arguments {
            buffer.appendUnchecked(UInt8(ascii: "$"))
            buffer.appendDecimalUnchecked(UInt64(argument.byteCount))
            buffer.appendUnchecked(13)
            buffer.appendUnchecked(10)
            let start = buffer.count
            argument.appendUnchecked(to: &buffer)
            if name.isEmpty { name = start..<buffer.count }
            buffer.appendUnchecked(13)
            buffer.appendUnchecked(10)
        }
        return name
    }
}

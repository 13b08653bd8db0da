/// Writes commands in the RESP2 request format (an array of bulk strings),
/// the bytes hiredis' own `redisFormatCommandArgv` would produce.
///
/// hiredis 0.14 formats each command through `sdscatfmt` and two heap
/// buffers, about 2,600 instructions for a two-argument `GET` (callgrind):
/// more than it spends reading and parsing the reply. Writing the same
/// bytes into a buffer the connection reuses costs a tenth of that, and
/// hiredis still does all socket I/O and reply parsing.
enum RESPEncoding {
    /// Appends `*<count>\r\n` then `$<length>\r\n<bytes>\r\n` per argument.
    static func append(_ arguments: [RedisArgument], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "*"))
        buffer.appendDecimal(UInt64(arguments.count))
        buffer.append(13)
        buffer.append(10)
        for argument in arguments {
            buffer.append(UInt8(ascii: "$"))
            buffer.appendDecimal(UInt64(argument.byteCount))
            buffer.append(13)
            buffer.append(10)
            argument.append(to: &buffer)
            buffer.append(13)
            buffer.append(10)
        }
    }
}

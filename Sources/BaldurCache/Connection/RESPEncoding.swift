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
        appendDecimal(arguments.count, to: &buffer)
        buffer.append(13)
        buffer.append(10)
        for argument in arguments {
            buffer.append(UInt8(ascii: "$"))
            appendDecimal(argument.byteCount, to: &buffer)
            buffer.append(13)
            buffer.append(10)
            argument.append(to: &buffer)
            buffer.append(13)
            buffer.append(10)
        }
    }

    /// Appends the decimal digits of a non-negative `value`, no allocation.
    static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        precondition(value >= 0, "RESP lengths are never negative")
        if value < 10 {
            buffer.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 24 digits
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { scratch in
            while rest > 0 {
                scratch[count] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
                count += 1
            }
            while count > 0 {
                count -= 1
                buffer.append(scratch[count])
            }
        }
    }
}

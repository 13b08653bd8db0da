/// A Lua script run with `EVALSHA`, falling back to `EVAL` in the same call
/// when the server answers `NOSCRIPT` (after `SCRIPT FLUSH`, a restart or a
/// failover). `EVAL` caches the script, so later calls are `EVALSHA` again.
///
/// The SHA-1 is computed locally, so the first call needs no `SCRIPT LOAD`
/// round trip.
public struct LuaScript: Sendable, Hashable {
    /// The script's source.
    public let source: String
    /// The lowercase hex SHA-1 of `source`, as `SCRIPT LOAD` returns it.
    public let sha1: String

    /// A script from its source.
    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hex(Array(source.utf8))
    }

    /// Runs the script: `EVALSHA sha1 numkeys keys... arguments...`, and on
    /// `NOSCRIPT` the same with `EVAL source`.
    ///
    /// - Returns: The script's reply. A script error is thrown as a
    ///   ``RedisError`` with code `server`.
    @discardableResult
    public func run(on client: RedisClient, keys: [RedisArgument], arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        var command = evalshaCommand(keys: keys, arguments: arguments)
        let reply = try client.sendAllowingErrorReply(command)
        guard isNoScript(reply) else { return try reply.throwingServerError() }
        evalInstead(&command)
        return try client.send(command)
    }

    /// Runs the script from async code, as ``run(on:keys:arguments:)-(_,_,_)`` does.
    @discardableResult
    public func run(on client: RedisClient, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RedisReply {
        var command = evalshaCommand(keys: keys, arguments: arguments)
        let reply = try await client.sendAllowingErrorReply(command)
        guard isNoScript(reply) else { return try reply.throwingServerError() }
        evalInstead(&command)
        return try await client.send(command)
    }

    private func evalshaCommand(keys: [RedisArgument], arguments: [RedisArgument]) -> [RedisArgument] {
        var command: [RedisArgument] = ["EVALSHA", RedisArgument(sha1), RedisArgument(keys.count)]
        command.append(contentsOf: keys)
        command.append(contentsOf: arguments)
        return command
    }

    private func isNoScript(_ reply: RedisReply) -> Bool {
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") { return true }
        return false
    }

    private func evalInstead(_ command: inout [RedisArgument]) {
        command[0] = "EVAL"
        command[1] = RedisArgument(source)
    }
}

/// SHA-1 (FIPS 180-4), only to name Lua scripts the way Redis does.
enum SHA1 {
    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bitLength = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                let b = chunk + i * 4
                w[i] = UInt32(padded[b]) << 24 | UInt32(padded[b + 1]) << 16 | UInt32(padded[b + 2]) << 8 | UInt32(padded[b + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32)
                switch i {
                case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (f, k) = (b ^ c ^ d, 0xCA62_C1D6)
                }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                (e, d, c, b, a) = (d, c, b << 30 | b >> 2, a, temp)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
        }
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for word in h {
            for shift in stride(from: 28, through: 0, by: -4) { out.append(digits[Int(word >> UInt32(shift) & 0xF)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

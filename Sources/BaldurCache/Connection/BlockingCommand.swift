/// How long a blocking command (`BLPOP key 10`, `WAIT 1 500`,
/// `XREAD BLOCK 2000 ...`) asks the server to hold it, and so how long its
/// reply may take: that time plus ``RedisConfiguration/blockingCommandTimeout``,
/// not `commandTimeout`, which bounds every other command.
enum BlockingCommand {
    /// What a blocking command asks for.
    enum Block: Equatable {
        /// A timeout of 0: block until data arrives.
        case forever
        /// Block at most this long.
        case upTo(Duration)
    }

    /// What `arguments` ask the server to block for; `nil` for a command
    /// that does not block, or whose timeout is not a number (the server
    /// refuses it at once).
    static func block(of arguments: [RedisArgument]) -> Block? {
        guard RedisClient.isBlocking(arguments), let name = arguments.first else { return nil }
        if name.isCommand(in: ["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"]) {
            return arguments.count > 2 ? block(arguments[arguments.count - 1], unit: .seconds(1)) : nil
        }
        if name.isCommand(in: ["BLMPOP", "BZMPOP"]) { return arguments.count > 1 ? block(arguments[1], unit: .seconds(1)) : nil }
        if name.isCommand(in: ["WAIT"]) { return arguments.count > 2 ? block(arguments[2], unit: .milliseconds(1)) : nil }
        if name.isCommand(in: ["WAITAOF"]) { return arguments.count > 3 ? block(arguments[3], unit: .milliseconds(1)) : nil }
        // XREAD / XREADGROUP ... BLOCK milliseconds ...
        guard let at = arguments.dropFirst().firstIndex(where: { $0.isCommand(in: ["BLOCK"]) }), at + 1 < arguments.count else { return nil }
        return block(arguments[at + 1], unit: .milliseconds(1))
    }

    /// How long the reply to `arguments` may take: `base` (`commandTimeout`)
    /// for a command that does not block, its block plus `margin` for one
    /// that does, `nil` (no limit) for one that blocks until data arrives or
    /// without a margin.
    static func replyTimeout(for arguments: [RedisArgument], base: Duration?, margin: Duration?) -> Duration? {
        switch block(of: arguments) {
        case nil: return base
        case .forever: return nil
        case .upTo(let wait): return margin.map { wait + $0 }
        }
    }

    /// `argument` as a count of `unit`s; `nil` when it is not a number of at least 0.
    private static func block(_ argument: RedisArgument, unit: Duration) -> Block? {
        guard let value = Double(String(decoding: argument.bytes, as: UTF8.self)), value.isFinite, value >= 0 else { return nil }
        if value == 0 { return .forever }
        // Capped at a century, so that no arithmetic on it can trap.
        return .upTo(value >= Duration.longestAccepted / unit ? .longestAccepted : unit * value)
    }
}

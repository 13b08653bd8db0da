/// What a connection's session looks like to the server, as far as the
/// commands sent on it changed it: the state that must not leak to the
/// next caller of a pooled connection.
///
/// The connection feeds every command it sends through ``observe(_:)``; the
/// pool takes a connection back only while ``isClean`` holds, and discards
/// (resets) it otherwise. A few command names are all it looks for; the
/// connection looks at each name as the request encoder wrote it, and the
/// length alone rules out the most common commands (`GET`, `SET`, `MGET`).
struct SessionState: Sendable, Equatable {
    /// `MULTI` was sent and no `EXEC` or `DISCARD` since: the server queues commands.
    private(set) var inTransaction = false
    /// `WATCH` was sent and no `EXEC`, `DISCARD` or `UNWATCH` since.
    private(set) var watching = false
    /// `SELECT` chose a database other than the configured one.
    private(set) var otherDatabase = false
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` or `MONITOR`: the server now
    /// sends messages nobody asked for.
    private(set) var pushing = false
    /// A ``Command/session`` command (`AUTH`, `QUIT`, `RESET`, `HELLO` with
    /// arguments, `CLIENT SETNAME|REPLY|TRACKING|...`): the user, the
    /// protocol, the name or the reply stream may no longer be the pool's.
    private(set) var unknown = false

    /// The database `SELECT` must leave selected for the session to stay clean.
    let configuredDatabase: Int

    init(configuredDatabase: Int) {
        self.configuredDatabase = configuredDatabase
    }

    /// `true` when the session is as the pool opened it.
    var isClean: Bool { !inTransaction && !watching && !otherDatabase && !pushing && !unknown }

    /// The commands that change session state, as far as this type tracks them.
    enum Command: Equatable {
        case multi, exec, discard, watch, unwatch, select
        /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`, `MONITOR`.
        case push
        /// `AUTH`, `QUIT`, `RESET`, `HELLO` and `CLIENT`: those of
        /// ``changesSession(_:)`` change what the next caller of the
        /// connection would see (its user, protocol, name, reply stream, or
        /// the connection itself). Refused on shared connections; a
        /// connection one caller holds is discarded after one.
        case session
    }

    /// The `CLIENT` subcommands that change the session; the others (`ID`,
    /// `INFO`, `LIST`, `GETNAME`, `KILL`, ...) only look.
    static let sessionClientSubcommands: Set<String> = ["SETNAME", "SETINFO", "REPLY", "TRACKING", "CACHING", "NO-EVICT", "NO-TOUCH"]

    /// For a ``Command/session`` command: whether it changes what the next
    /// caller of the connection sees. `HELLO` without arguments only
    /// reports; `CLIENT` only with a subcommand of ``sessionClientSubcommands``.
    static func changesSession(_ command: [RedisArgument]) -> Bool {
        guard let name = command.first else { return false }
        if isClient(command) {
            guard command.count >= 2 else { return false }
            return sessionClientSubcommands.contains(String(decoding: command[1].bytes, as: UTF8.self).uppercased())
        }
        if name.withBytes({ matches($0, "HELLO") }) { return command.count >= 2 }
        return true
    }

    /// Accounts for `command` being sent.
    mutating func observe(_ command: [RedisArgument]) {
        if let kind = Self.kind(of: command) { observe(kind, command) }
    }

    /// Accounts for `command`, already known to be of `kind`, being sent.
    mutating func observe(_ kind: Command, _ command: [RedisArgument]) {
        switch kind {
        case .multi: inTransaction = true
        case .exec, .discard:
            inTransaction = false
            watching = false
        case .watch: watching = true
        case .unwatch: watching = false
        case .select:
            let database = command.count == 2 ? Int(String(decoding: command[1].bytes, as: UTF8.self)) : nil
            otherDatabase = database != configuredDatabase
        case .push: pushing = true
        case .session:
            if Self.changesSession(command) { unknown = true }
        }
    }

    /// The session-changing command `command` is, or `nil` for any other.
    static func kind(of command: [RedisArgument]) -> Command? {
        guard let name = command.first else { return nil }
        return name.withBytes { kind(ofName: $0) }
    }

    /// `true` when a command name of `length` bytes may change the session:
    /// most are ruled out by their length alone (GET, SET, DEL, MGET, ...).
    @inline(__always)
    static func mayChangeSession(nameLength length: Int) -> Bool {
        length >= 4 && length <= 10 && length != 8
    }

    /// The session-changing command named by `raw` (any letter case), or `nil`.
    static func kind(ofName raw: UnsafeRawBufferPointer) -> Command? {
        guard mayChangeSession(nameLength: raw.count) else { return nil }
        switch raw.count {
        case 4:
            if matches(raw, "EXEC") { return .exec }
            if matches(raw, "AUTH") || matches(raw, "QUIT") { return .session }
            return nil
        case 5:
            if matches(raw, "MULTI") { return .multi }
            if matches(raw, "WATCH") { return .watch }
            if matches(raw, "RESET") || matches(raw, "HELLO") { return .session }
            return nil
        case 6:
            if matches(raw, "SELECT") { return .select }
            if matches(raw, "CLIENT") { return .session }
            return nil
        case 7:
            if matches(raw, "DISCARD") { return .discard }
            if matches(raw, "UNWATCH") { return .unwatch }
            if matches(raw, "MONITOR") { return .push }
            return nil
        case 9: return matches(raw, "SUBSCRIBE") ? .push : nil
        case 10: return matches(raw, "PSUBSCRIBE") || matches(raw, "SSUBSCRIBE") ? .push : nil
        default: return nil
        }
    }

    /// `CLIENT REPLY ...`: the server stops answering (`OFF`) or skips a reply (`SKIP`).
    static func isClientReply(_ command: [RedisArgument]) -> Bool {
        command.count >= 2 && isClient(command) && command[1].withBytes { matches($0, "REPLY") }
    }

    static func isClient(_ command: [RedisArgument]) -> Bool {
        command.first?.withBytes { matches($0, "CLIENT") } ?? false
    }

    /// ASCII case-insensitive equality with an upper-case `name`.
    @inline(__always)
    private static func matches(_ raw: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard raw.count == name.utf8CodeUnitCount else { return false }
        let expected = name.utf8Start
        for index in 0..<raw.count {
            let byte = raw[index]
            let upper = (byte >= 0x61 && byte <= 0x7A) ? byte - 0x20 : byte
            if upper != expected[index] { return false }
        }
        return true
    }
}

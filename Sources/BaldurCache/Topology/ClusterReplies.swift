/// A cluster error reply that says the command did not run and where, or
/// when, to send it again.
enum ClusterRedirect: Equatable {
    /// `MOVED slot host:port`: the slot is served there now, for good.
    case moved(slot: Int, to: RedisServerAddress)
    /// `ASK slot host:port`: this key is being migrated there; send
    /// `ASKING` and the command there, once.
    case ask(RedisServerAddress)
    /// `TRYAGAIN` (a multi-key command during a migration), `CLUSTERDOWN`,
    /// `LOADING`, `MASTERDOWN`: try again after a pause. `refreshMap` when
    /// the map may be stale (`CLUSTERDOWN`: a failover may be under way).
    case retry(refreshMap: Bool)

    /// The redirect `reply` asks for, or `nil` for any other reply.
    /// `node` is where the reply came from: an empty host means its host.
    init?(_ reply: RedisReply, from node: RedisServerAddress) {
        guard case .error(let message) = reply, let first = message.utf8.first,
              first == UInt8(ascii: "M") || first == UInt8(ascii: "A") || first == UInt8(ascii: "T")
                || first == UInt8(ascii: "C") || first == UInt8(ascii: "L") else { return nil }
        let words = message.split(separator: " ", maxSplits: 3)
        switch words.first {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), slot >= 0, slot < ClusterSlot.count,
                  let address = Self.address(String(words[2]), near: node) else { return nil }
            self = words[0] == "MOVED" ? .moved(slot: slot, to: address) : .ask(address)
        case "TRYAGAIN", "LOADING", "MASTERDOWN": self = .retry(refreshMap: false)
        case "CLUSTERDOWN": self = .retry(refreshMap: true)
        default: return nil
        }
    }

    /// `host:port` (the port after the last colon, so IPv6 hosts work); an
    /// empty host is `node`'s.
    static func address(_ text: String, near node: RedisServerAddress) -> RedisServerAddress? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty {
            guard case .tcp(let nodeHost, _) = node else { return nil }
            host = nodeHost
        }
        let address = RedisServerAddress.tcp(host: host, port: port)
        return (try? address.validate()) == nil ? nil : address
    }
}

/// Where one cluster command goes next, reply after reply: the node a
/// `MOVED` or `ASK` names, or the same target again after a pause for
/// `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` and `MASTERDOWN`, within a deadline.
/// The sync and async sends share it.
struct ClusterRoute {
    /// The most redirects one command follows.
    static let maxRedirects = 16

    enum Next: Equatable {
        /// The reply is the answer.
        case answer
        /// Send again, to ``target``, after `pause` (zero: at once).
        case resend(pause: Duration)
    }

    private let original: ClusterTarget
    /// Where the command goes now.
    private(set) var target: ClusterTarget
    /// Whether `ASKING` goes first.
    private(set) var asking = false
    private var redirects = 0
    private var backoff = Backoff(initial: .milliseconds(10), cap: .milliseconds(200))
    private let deadline: ContinuousClock.Instant

    /// A route to `target`; retries stop `within` from now (5 s without a limit).
    init(_ target: ClusterTarget, within limit: Duration?) {
        original = target
        self.target = target
        deadline = ContinuousClock.now + (limit ?? .seconds(5))
    }

    /// What to do after `reply` from `node`. A `MOVED` also points the slot
    /// at its new owner in `cluster`'s map; a `CLUSTERDOWN` refreshes the map.
    mutating func next(after reply: RedisReply, from node: RedisServerAddress, on cluster: ClusterRouter) -> Next {
        guard redirects < Self.maxRedirects, let redirect = ClusterRedirect(reply, from: node) else { return .answer }
        redirects += 1
        (target, asking) = (original, false)
        switch redirect {
        case .moved(let slot, let address):
            cluster.moved(slot: slot, to: address)
            target = .address(address)
            return .resend(pause: .zero)
        case .ask(let address):
            (target, asking) = (.address(address), true)
            return .resend(pause: .zero)
        case .retry(let refreshMap):
            if refreshMap { cluster.refreshInBackground(reason: "a node answered CLUSTERDOWN") }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return .answer }
            return .resend(pause: min(backoff.nextDelay(), left))
        }
    }
}

/// A multi-key command split into one command per slot, and the merge of
/// their replies.
struct ClusterSplit {
    /// One command per slot, in the order of each slot's first key.
    let commands: [[RedisArgument]]
    /// Where each command goes: its slot (a part never splits again).
    let targets: [ClusterTarget]
    /// For each command, the positions in the caller's key list of its keys.
    private let positions: [[Int]]
    private let kind: ClusterCommand.MultiKey
    private let keyCount: Int

    /// Two passes: each key's slot group first, then each command built
    /// at its final size (growing them key by key cost a cluster `mget`
    /// three to five allocations a key). A `MGET` part of one key is sent
    /// as `GET` (a bulk reply, not an array of one), its `WRONGTYPE`
    /// answered as `MGET` answers a key that holds no string: nil.
    init(_ arguments: [RedisArgument], _ kind: ClusterCommand.MultiKey) {
        self.kind = kind
        let name = arguments[0]
        let stride = kind == .pairs ? 2 : 1
        let count = (arguments.count - 1) / stride
        var groupOfSlot: [Int: Int] = Dictionary(minimumCapacity: count)
        var groupOfKey: [Int] = []
        groupOfKey.reserveCapacity(count)
        var sizes: [Int] = []
        var targets: [ClusterTarget] = []
        for position in 0..<count {
            let slot = ClusterSlot.of(arguments[1 + position * stride])
            if let group = groupOfSlot[slot] {
                groupOfKey.append(group)
                sizes[group] += 1
            } else {
                groupOfSlot[slot] = sizes.count
                groupOfKey.append(sizes.count)
                sizes.append(1)
                targets.append(.slot(slot))
            }
        }
        let single = kind == .values ? sizes.map { $0 == 1 } : []
        var commands: [[RedisArgument]] = sizes.indices.map { group in
            var command: [RedisArgument] = []
            command.reserveCapacity(1 + sizes[group] * stride)
            command.append(kind == .values && single[group] ? "GET" : name)
            return command
        }
        var positions: [[Int]] = sizes.map { size in
            var keys: [Int] = []
            keys.reserveCapacity(size)
            return keys
        }
        for (position, group) in groupOfKey.enumerated() {
            let first = 1 + position * stride
            commands[group].append(contentsOf: arguments[first..<(first + stride)])
            positions[group].append(position)
        }
        self.commands = commands
        self.targets = targets
        self.positions = positions
        self.single = single
        keyCount = count
    }

    /// For `MGET`, whether each part is one key sent as `GET`.
    private let single: [Bool]

    /// One reply for the caller, as one node would have given: `MGET`'s
    /// values in key order, `MSET`'s `OK`, the sum of the counts. The first
    /// error reply, if any part failed.
    func merge(_ replies: [RedisReply]) -> RedisReply {
        switch kind {
        case .values:
            var values = [RedisReply](repeating: .null, count: keyCount)
            for (part, (reply, keys)) in zip(replies, positions).enumerated() {
                if single[part] {
                    switch reply {
                    case .bulk, .null: values[keys[0]] = reply
                    case .error(let text) where text.hasPrefix("WRONGTYPE"): values[keys[0]] = .null
                    case .error: return reply
                    default: return .error("ERR a cluster node answered GET with \(reply.kindName)")
                    }
                    continue
                }
                if case .error = reply { return reply }
                guard case .array(let parts) = reply, parts.count == keys.count else {
                    return .error("ERR a cluster node answered MGET with \(reply.kindName) of the wrong shape")
                }
                for (part, position) in zip(parts, keys) { values[position] = part }
            }
            return .array(values)
        case .pairs:
            if let error = replies.first(where: { if case .error = $0 { true } else { false } }) { return error }
            return .status("OK")
        case .count:
            if let error = replies.first(where: { if case .error = $0 { true } else { false } }) { return error }
            var total: Int64 = 0
            for reply in replies {
                guard case .integer(let count) = reply else {
                    return .error("ERR a cluster node answered with \(reply.kindName) instead of an integer")
                }
                total += count
            }
            return .integer(total)
        }
    }

    /// One reply from a command sent to every master: `KEYS`' arrays
    /// joined, `DBSIZE`'s counts summed, else the first reply (the first
    /// error, if any).
    static func mergeEveryMaster(_ arguments: [RedisArgument], _ replies: [RedisReply]) -> RedisReply {
        if let error = replies.first(where: { if case .error = $0 { true } else { false } }) { return error }
        if arguments[0].isCommand(in: ["KEYS"]) { return .array(replies.flatMap { $0.array ?? [] }) }
        if arguments[0].isCommand(in: ["DBSIZE"]) { return .integer(replies.reduce(0) { $0 + ($1.integer ?? 0) }) }
        return replies.first ?? .null
    }
}

/// The cursor of a `SCAN` over a cluster: the index of the master being
/// scanned (in ``ClusterRouter/masters()``'s order) in the top 16 bits, that
/// master's own cursor in the low 48 (Redis' cursors index a hash table,
/// far below 2^48).
struct ClusterScanCursor: Equatable {
    let master: Int
    let nodeCursor: UInt64

    static let nodeBits: UInt64 = 48

    init(_ cursor: UInt64) {
        master = Int(cursor >> Self.nodeBits)
        nodeCursor = cursor & ((1 << Self.nodeBits) - 1)
    }

    /// The cursor to give the caller after `master` answered `next`: the
    /// same master while it has more, the next master's start after, 0
    /// after the last.
    static func after(master: Int, next: UInt64, masters: Int) throws(RedisError) -> UInt64 {
        if next != 0 {
            guard next < 1 << nodeBits, master < 1 << 16 else {
                throw RedisError(.protocolError, "a cluster node returned SCAN cursor \(next), too large to combine with a node index")
            }
            return UInt64(master) << nodeBits | next
        }
        return master + 1 < masters ? UInt64(master + 1) << nodeBits : 0
    }
}

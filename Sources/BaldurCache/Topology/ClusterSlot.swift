/// Redis Cluster's key-to-slot rule: CRC16 (XMODEM) of the key, or of its
/// hash tag, modulo 16384.
enum ClusterSlot {
    /// The number of slots in a cluster.
    static let count = 16384

    /// The slot of `key`. When the key holds `{tag}` with at least one byte
    /// between the first `{` and the next `}`, only the tag is hashed.
    static func of(_ key: UnsafeRawBufferPointer) -> Int {
        let hashed = tag(in: key) ?? 0..<key.count
        return Int(crc16(UnsafeRawBufferPointer(rebasing: key[hashed])) & 0x3FFF)
    }

    /// The slot of `key`.
    static func of(_ key: RedisArgument) -> Int { key.withBytes { of($0) } }

    /// The slot of `key`.
    static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(UnsafeRawBufferPointer($0)) }
    }

    /// The byte range of `key`'s hash tag, if it has one.
    static func tag(in key: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
              let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1 else { return nil }
        return (open + 1)..<close
    }

    /// A key for `suffix` that hashes to `key`'s slot, so one Lua script or
    /// `MULTI` may touch both: `key` + `suffix` when `key` has a hash tag of
    /// its own, else `{key}` + `suffix`. (A key with a `}` but no tag cannot
    /// be wrapped; it gets the shortest decimal tag of the same slot.)
    static func companion(of key: String, suffix: String) -> String {
        var copy = key
        let (hasTag, hasBrace) = copy.withUTF8 { bytes in
            (tag(in: UnsafeRawBufferPointer(bytes)) != nil, bytes.contains(UInt8(ascii: "}")))
        }
        if hasTag { return key + suffix }
        if !hasBrace { return "{" + key + "}" + suffix }
        return "{" + decimalTag(forSlot: of(key)) + "}" + key + suffix
    }

    /// The smallest decimal number whose slot is `slot` (every slot has one
    /// up to 109,757, the largest such number).
    static func decimalTag(forSlot slot: Int) -> String {
        var number = 0
        while of(String(number)) != slot { number += 1 }
        return String(number)
    }

    /// CRC16/XMODEM (polynomial 0x1021, initial 0), as cluster.c computes it.
    static func crc16(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        table.withUnsafeBufferPointer { table in
            var crc: UInt16 = 0
            for byte in bytes {
                crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte)) & 0xFF]
            }
            return crc
        }
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

/// Where a command's keys are, for routing it in a cluster.
enum ClusterCommand {
    /// How a command is routed.
    enum Route: Equatable {
        /// To the master of the slot of the key at this argument index.
        case key(at: Int)
        /// To any master: no key (or a script given no keys).
        case anyMaster
        /// Split by slot and merged: `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`.
        case multiKey(MultiKey)
        /// To every master, replies merged: `KEYS`, `DBSIZE`, `FLUSHALL`, `FLUSHDB`, `SCRIPT`.
        case everyMaster
        /// `SCAN`: one master after another, the cursor naming the master.
        case scan
    }

    /// How the parts of a split multi-key command are merged.
    enum MultiKey: Equatable {
        /// `MGET`: one key per slot group, replies in the caller's key order.
        case values
        /// `MSET`: key-value pairs; `OK` when every part said `OK`.
        case pairs
        /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: the integers summed.
        case count
    }

    /// The route of `arguments` (the first is the command's name).
    static func route(of arguments: [RedisArgument]) -> Route {
        guard let name = arguments.first else { return .anyMaster }
        let upper = name.withBytes { bytes in String(decoding: bytes, as: UTF8.self) }.uppercased()
        switch upper {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            // name script numkeys key...: routed by the first key, if any.
            guard arguments.count > 3, let count = arguments[2].withBytes({ Int(String(decoding: $0, as: UTF8.self)) }), count > 0 else {
                return .anyMaster
            }
            return .key(at: 3)
        case "MGET": return arguments.count > 2 ? .multiKey(.values) : .key(at: 1)
        case "MSET":
            // Pairs only: a key without its value goes whole to one node, which refuses it.
            return arguments.count > 3 && arguments.count % 2 == 1 ? .multiKey(.pairs) : .key(at: 1)
        case "DEL", "UNLINK", "EXISTS", "TOUCH": return arguments.count > 2 ? .multiKey(.count) : .key(at: 1)
        case "KEYS", "DBSIZE", "FLUSHALL", "FLUSHDB", "SCRIPT": return .everyMaster
        case "SCAN": return .scan
        case "XREAD", "XREADGROUP":
            // ... STREAMS key... id...: the first key after STREAMS.
            if let streams = arguments.firstIndex(where: { $0.isCommand(in: ["STREAMS"]) }), streams + 1 < arguments.count {
                return .key(at: streams + 1)
            }
            return .anyMaster
        default:
            return arguments.count > 1 && !keyless.contains(upper) ? .key(at: 1) : .anyMaster
        }
    }

    /// Commands with arguments but no key: they go to any master.
    static let keyless: Set<String> = [
        "PING", "ECHO", "INFO", "TIME", "CLIENT", "CONFIG", "CLUSTER", "COMMAND", "HELLO", "AUTH", "SELECT",
        "MEMORY", "SLOWLOG", "LATENCY", "ACL", "DEBUG", "FUNCTION", "PUBLISH", "WAIT", "ROLE", "LASTSAVE", "READONLY",
        "READWRITE", "ASKING", "MULTI", "EXEC", "DISCARD", "UNWATCH", "RANDOMKEY", "SWAPDB", "MONITOR", "SUBSCRIBE",
        "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE",
    ]
}

@testable import BaldurCache
import CHiredis
import Foundation
import Testing

/// The request bytes we write instead of hiredis' formatter, and the bounded
/// spin-wait for replies.
@Suite("Wire: request encoding and reply spin-wait")
struct WireTests {
    /// hiredis' own formatting of `arguments` (`redisFormatCommandArgv`).
    private func hiredisFormat(_ arguments: [[UInt8]]) -> [UInt8] {
        let copies = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
            bytes.withUnsafeBytes { UnsafeMutableRawPointer(copy).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(copy), byteCount: bytes.count) }
            return copy
        }
        defer { copies.forEach { $0.deallocate() } }
        var argv = copies.map { UnsafePointer<CChar>?(UnsafePointer($0)) }
        let lengths = arguments.map(\.count)
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &argv, lengths)
        defer { redisFreeCommand(target) }
        guard length > 0, let target else { return [] }
        return Array(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }

    @Test("RESPEncoding writes exactly the bytes hiredis' redisFormatCommandArgv does", .ownThread, arguments: [
        ["PING"],
        ["SET", "k", ""],
        ["GET", RedisArgument(bytes: (0...255).map { UInt8($0) })],
        ["SET", "héllo ✓", RedisArgument(bytes: [13, 10, 0, 13, 10])],
        ["INCRBY", RedisArgument(-42), RedisArgument(Int64.max)],
        (0..<12).map { RedisArgument("argument\($0)") },
        ["SET", "big", RedisArgument(bytes: [UInt8](repeating: 7, count: 100_003))],
        ["GET", RedisArgument(prefix: "app:tenant:", key: "héllo ✓ and a key past fifteen bytes"), RedisArgument(prefix: "", key: "k")],
    ] as [[RedisArgument]])
    func encodingMatchesHiredis(arguments: [RedisArgument]) {
        #expect(RESPEncoding.encode(arguments) == hiredisFormat(arguments.map(\.bytes)))
    }

    @Test("arguments are equal, and hash alike, when they put the same bytes on the wire", .ownThread)
    func argumentEquality() {
        let spellings: [RedisArgument] = [RedisArgument("app:key"), .bytes(Array("app:key".utf8)), RedisArgument(prefix: "app:", key: "key"), RedisArgument(prefix: "", key: "app:key")]
        #expect(Set(spellings).count == 1)
        for argument in spellings {
            #expect(argument == spellings[0])
            #expect(argument.byteCount == 7)
            #expect(argument.bytes == Array("app:key".utf8))
        }
        #expect(RedisArgument(prefix: "app:", key: "key") != RedisArgument(prefix: "app", key: "key"))
        #expect(RedisArgument(42) == "42")
    }

    @Test("decimals are written digit for digit", .ownThread, arguments: [0, 1, 9, 10, 99, 100, 12_345, 1_000_000_007, UInt64(Int64.max), UInt64.max])
    func decimals(value: UInt64) {
        var buffer = OutputBuffer(capacity: 1)
        buffer.appendDecimal(value)
        #expect(String(decoding: buffer.bytes, as: UTF8.self) == String(value))
        #expect(OutputBuffer.decimalWidth(value) == String(value).count)
    }

    @Test("requests larger than the kept buffer, and pipelines, round-trip with and without spinning", .ownThread, arguments: [Duration.zero, .microseconds(100)])
    func largeRequests(spinWait: Duration) throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.spinWait = spinWait
        guard case .standalone(let address) = configuration.topology else { Issue.record("standalone expected"); return }
        let connection = try RedisConnection(address: address, configuration: configuration)
        defer { connection.close() }
        let keys = TestKeys()
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try connection.send(["SET", RedisArgument(keys("big")), .bytes(big)])
        #expect(try connection.send(["GET", RedisArgument(keys("big"))]) == .bulk(big))
        let replies = try connection.pipeline((0..<500).map { _ in ["INCR", RedisArgument(keys("counter"))] })
        #expect(replies == (1...500).map { RedisReply.integer(Int64($0)) })
        // A reply far slower than the spin budget still arrives, and the next call works.
        #expect(try connection.send(["BLPOP", RedisArgument(keys("empty")), "0.05"]) == .null)
        #expect(try connection.send(["DEL", RedisArgument(keys("big")), RedisArgument(keys("counter"))]) == .integer(2))
    }

    @Test("a pipeline whose commands are built as it goes closes its connection when building fails after a chunk went out, not before", .ownThread)
    func lazyPipelineFailure() throws {
        let configuration = try TestEnvironment.configuration()
        guard case .standalone(let address) = configuration.topology else { Issue.record("standalone expected"); return }
        let connection = try RedisConnection(address: address, configuration: configuration)
        defer { connection.close() }
        let key = RedisArgument(TestKeys()("lazy"))
        let failure = RedisError(.invalidArgument, "built badly")
        // Fails while the first chunk is still being built: nothing was sent.
        #expect(throws: RedisError.self) { try connection.pipeline(count: 10) { index throws(RedisError) in
            if index == 5 { throw failure }
            return ["INCR", key]
        } }
        #expect(connection.isOpen)
        #expect(try connection.send(["GET", key]) == .null)
        // Fails after chunks went out: those commands ran, the connection is dropped.
        let commandsPerChunk = RedisConnection.pipelineChunk / RESPEncoding.encode(["INCR", key]).count
        #expect(throws: RedisError.self) { try connection.pipeline(count: 4 * commandsPerChunk) { index throws(RedisError) in
            if index == 2 * commandsPerChunk { throw failure }
            return ["INCR", key]
        } }
        #expect(!connection.isOpen)
        let fresh = try RedisConnection(address: address, configuration: configuration)
        defer { fresh.close() }
        // The server may still be working through the dropped connection's input: wait until the count settles.
        var ran = -1
        for _ in 0..<50 {
            let now = try fresh.send(["GET", key]).string.flatMap { Int($0) } ?? 0
            if now == ran { break }
            ran = now
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(ran >= commandsPerChunk && ran <= 2 * commandsPerChunk + 1)
        try fresh.send(["DEL", key])
    }

    /// Two connected unix sockets: what `ReplySpin` polls, without a server's timing in the way.
    private func withSocketPair(_ body: (_ reading: Int32, _ writing: Int32) throws -> Void) throws {
        var descriptors: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &descriptors) == 0)
        defer { for descriptor in descriptors { _ = Glibc.close(descriptor) } }
        try body(descriptors[0], descriptors[1])
    }

    @Test("spinning sees a reply that is already there, and gives up on one that never comes", .ownThread)
    func spinHitAndMiss() throws {
        try withSocketPair { reading, writing in
            var spin = ReplySpin(budget: .microseconds(200))
            #expect(write(writing, "+", 1) == 1)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 1 && spin.misses == 0)
            var byte: UInt8 = 0
            #expect(read(reading, &byte, 1) == 1)

            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 1 && spin.misses == 1)
        }
    }

    @Test("after a miss a connection skips spinning for 2, then 4 calls; a hit resets the back-off", .ownThread)
    func spinBackOff() throws {
        try withSocketPair { reading, writing in
            var spin = ReplySpin(budget: .microseconds(100))
            spin.awaitReadable(reading, busyCallers: 1)  // miss 1: skip the next 2
            #expect(write(writing, "+", 1) == 1)         // from here a reply is always waiting
            spin.awaitReadable(reading, busyCallers: 1)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 0 && spin.misses == 1)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 1)
            var byte: UInt8 = 0
            #expect(read(reading, &byte, 1) == 1)
            spin.awaitReadable(reading, busyCallers: 1)  // miss after a hit: back to a cooldown of 2
            #expect(write(writing, "+", 1) == 1)
            spin.awaitReadable(reading, busyCallers: 1)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 1 && spin.misses == 2)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.hits == 2)
            #expect(read(reading, &byte, 1) == 1)
            spin.awaitReadable(reading, busyCallers: 1)  // two misses in a row: skip 4
            spin.awaitReadable(reading, busyCallers: 1)
            spin.awaitReadable(reading, busyCallers: 1)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.misses == 4)
            for _ in 0..<4 { spin.awaitReadable(reading, busyCallers: 1) }
            #expect(spin.misses == 4)
            spin.awaitReadable(reading, busyCallers: 1)
            #expect(spin.misses == 5)
        }
    }

    @Test("nothing spins with a zero budget or while more threads than maxSpinners await replies", .ownThread)
    func spinGates() throws {
        try withSocketPair { reading, writing in
            #expect(write(writing, "+", 1) == 1)
            var off = ReplySpin(budget: .zero)
            off.awaitReadable(reading, busyCallers: 1)
            #expect(off.hits == 0 && off.misses == 0)
            var crowded = ReplySpin(budget: .microseconds(100))
            crowded.awaitReadable(reading, busyCallers: ReplySpin.maxSpinners + 1)
            #expect(crowded.hits == 0 && crowded.misses == 0)
            crowded.awaitReadable(reading, busyCallers: ReplySpin.maxSpinners)
            #expect(crowded.hits == 1)
        }
    }
}

extension RESPEncoding {
    /// The request for one command, as bytes.
    static func encode(_ arguments: [RedisArgument]) -> [UInt8] {
        var buffer = OutputBuffer()
        append(arguments, to: &buffer)
        return buffer.bytes
    }
}

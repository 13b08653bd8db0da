import Foundation

/// Redis Cluster: how a command, a pipeline or a multi-key call reaches the
/// nodes that serve its keys (see ``ClusterRouter`` for the map).
///
/// - A command with a key goes to the master of the key's slot; one
///   without (`PING`, `INFO`, a script given no keys) to a master.
/// - `MOVED` points the slot at the node named and sends the command there;
///   `ASK` sends `ASKING` and the command to the node named, once, leaving
///   the map as it is; `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` and
///   `MASTERDOWN` (the command did not run) send it again after a backoff,
///   within ``RedisConfiguration/commandTimeout``. At most
///   ``ClusterRoute/maxRedirects`` hops; then the last error reply is the answer.
/// - `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS` and `TOUCH` over keys of
///   several slots are split into one command per slot, sent per node as
///   pipelines (the async API: every node at once), and merged as one node
///   would answer. Not atomic across slots: a failure can leave some parts done.
/// - `KEYS`, `DBSIZE`, `FLUSHALL`, `FLUSHDB` and `SCRIPT` go to every
///   master; `SCAN` walks the masters one after another, its cursor naming
///   the master (see ``ClusterScanCursor``).
/// - A pipeline is split per node, each part one pipeline, replies back in
///   the caller's order; a redirected command is sent again on its own. A
///   split or fanned-out command in a pipeline runs after the commands
///   before it and before those after it.
extension RedisClient {
    // MARK: Synchronous

    /// Sends `arguments` where the cluster serves them.
    func clusterSend(_ arguments: [RedisArgument], on cluster: ClusterRouter) throws(RedisError) -> RedisReply {
        switch ClusterCommand.route(of: arguments) {
        case .key(let index):
            return try clusterSend(arguments, to: .slot(ClusterSlot.of(arguments[index])), on: cluster)
        case .anyMaster:
            return try clusterSend(arguments, to: .anyMaster, on: cluster)
        case .multiKey(let kind):
            let split = ClusterSplit(arguments, kind)
            return split.merge(try clusterPipeline(split.commands, targets: split.targets, on: cluster))
        case .everyMaster:
            var replies: [RedisReply] = []
            for node in try cluster.masters() {
                replies.append(try clusterSend(arguments, to: .address(node.address), on: cluster))
            }
            return ClusterSplit.mergeEveryMaster(arguments, replies)
        case .scan:
            let masters = try cluster.masters()
            guard let page = try scanArguments(arguments, masters: masters) else { return Self.finishedScan }
            let reply = try clusterSend(page.arguments, to: .address(masters[page.cursor.master].address), on: cluster)
            return try scanReply(reply, cursor: page.cursor, masters: masters.count)
        }
    }

    /// Sends one command to `target`, following redirects.
    private func clusterSend(_ arguments: [RedisArgument], to original: ClusterTarget, on cluster: ClusterRouter) throws(RedisError) -> RedisReply {
        var route = ClusterRoute(original, within: configuration.commandTimeout)
        while true {
            let node = try cluster.node(for: route.target)
            let asking = route.asking
            let reply = try withRetry(arguments[0].isCommand(in: Self.retryableCommands)) { connection throws(RedisError) in
                if asking { return try connection.pipeline([["ASKING"], arguments], pooled: true)[1] }
                return try connection.sendAllowingErrorReply(arguments, pooled: true)
            } pool: { () throws(RedisError) in node.pool }
            guard case .resend(let pause) = route.next(after: reply, from: node.address, on: cluster) else { return reply }
            if pause > .zero { Thread.sleep(forTimeInterval: Double(pause.nanoseconds) / 1e9) }
        }
    }

    /// Runs `commands` as one pipeline per node, replies in the caller's
    /// order. A command that is split or fanned out itself runs on its own,
    /// after the commands before it and before those after it. `targets`
    /// routes the commands instead of their keys (a split's parts).
    func clusterPipeline(
        _ commands: [[RedisArgument]], targets: [ClusterTarget]? = nil, on cluster: ClusterRouter
    ) throws(RedisError) -> [RedisReply] {
        var replies = [RedisReply](repeating: .null, count: commands.count)
        for step in Self.pipelineSteps(commands, targets: targets) {
            switch step {
            case .segment(let segment): try runSegment(segment, of: commands, into: &replies, on: cluster)
            case .alone(let index): replies[index] = try clusterSend(commands[index], on: cluster)
            }
        }
        return replies
    }

    /// One pipeline per node for `segment`; then each redirected command
    /// once more on its own, in order, following its redirects.
    private func runSegment(
        _ segment: [(index: Int, target: ClusterTarget)], of commands: [[RedisArgument]], into replies: inout [RedisReply],
        on cluster: ClusterRouter
    ) throws(RedisError) {
        guard !segment.isEmpty else { return }
        let groups = try Self.groupByNode(segment, on: cluster)
        let parts = groups.map { group in group.indices.map { commands[$0] } }
        func retryable(_ part: [[RedisArgument]]) -> Bool { part.allSatisfy { $0[0].isCommand(in: Self.retryableCommands) } }
        if groups.count == 1 {
            let partReplies = try withRetry(retryable(parts[0])) { connection throws(RedisError) in
                try connection.pipeline(parts[0], pooled: true)
            } pool: { () throws(RedisError) in groups[0].node.pool }
            for (index, reply) in zip(groups[0].indices, partReplies) { replies[index] = reply }
        } else {
            // Every node's part written before any is read: the nodes work at
            // once, one round trip in all instead of one per node.
            var failures: [(group: Int, error: RedisError)] = []
            var sent: [(group: Int, pool: ServerPool, pooled: ServerPool.PooledConnection)] = []
            for (group, part) in parts.enumerated() {
                let pool = groups[group].node.pool
                do throws(RedisError) {
                    let pooled = try pool.checkout()
                    do throws(RedisError) {
                        try pooled.connection.sendPipeline(count: part.count, pooled: true) { index in part[index] }
                        sent.append((group, pool, pooled))
                    } catch {
                        pool.checkin(pooled)
                        throw error
                    }
                } catch {
                    router.failed(error, at: pool.address)
                    failures.append((group, error))
                }
            }
            for (group, pool, pooled) in sent {
                do throws(RedisError) {
                    let partReplies = try pooled.connection.receivePipeline(count: parts[group].count)
                    pool.checkin(pooled)
                    for (index, reply) in zip(groups[group].indices, partReplies) { replies[index] = reply }
                } catch {
                    pool.checkin(pooled)
                    router.failed(error, at: pool.address)
                    failures.append((group, error))
                }
            }
            // A part that failed: what the one-node path does after a first
            // attempt failed (a read-only part once more on a fresh connection).
            for (group, error) in failures.sorted(by: { $0.group < $1.group }) {
                guard retryPolicy.decide(after: error, attempt: 1, readOnly: { retryable(parts[group]) }) == .resendOnFreshConnection else { throw error }
                let partReplies = try withRetry(false) { connection throws(RedisError) in
                    try connection.pipeline(parts[group], pooled: true)
                } pool: { () throws(RedisError) in groups[group].node.pool }
                for (index, reply) in zip(groups[group].indices, partReplies) { replies[index] = reply }
            }
        }
        for (index, target) in segment where Self.isRedirect(replies[index]) {
            replies[index] = try clusterSend(commands[index], to: target, on: cluster)
        }
    }

    /// `segment`'s command indices grouped by the node that serves them, in first-seen order.
    private static func groupByNode(
        _ segment: [(index: Int, target: ClusterTarget)], on cluster: ClusterRouter
    ) throws(RedisError) -> [(node: ClusterNode, indices: [Int])] {
        var groups: [(node: ClusterNode, indices: [Int])] = []
        for (index, target) in segment {
            let node = try cluster.node(for: target)
            if let group = groups.firstIndex(where: { $0.node === node }) {
                groups[group].indices.append(index)
            } else {
                groups.append((node, [index]))
            }
        }
        return groups
    }

    // MARK: Asynchronous

    /// ``clusterSend(_:on:)`` for the async API.
    func clusterSend(_ arguments: [RedisArgument], on cluster: ClusterRouter) async throws -> RedisReply {
        switch ClusterCommand.route(of: arguments) {
        case .key(let index):
            return try await clusterSend(arguments, to: .slot(ClusterSlot.of(arguments[index])), on: cluster)
        case .anyMaster:
            return try await clusterSend(arguments, to: .anyMaster, on: cluster)
        case .multiKey(let kind):
            let split = ClusterSplit(arguments, kind)
            return split.merge(try await clusterPipeline(split.commands, targets: split.targets, on: cluster))
        case .everyMaster:
            let masters = try await cluster.masters()
            let replies = try await concurrently(masters.count) { index in
                try await self.clusterSend(arguments, to: .address(masters[index].address), on: cluster)
            }
            return ClusterSplit.mergeEveryMaster(arguments, replies)
        case .scan:
            let masters = try await cluster.masters()
            guard let page = try scanArguments(arguments, masters: masters) else { return Self.finishedScan }
            let reply = try await clusterSend(page.arguments, to: .address(masters[page.cursor.master].address), on: cluster)
            return try scanReply(reply, cursor: page.cursor, masters: masters.count)
        }
    }

    private func clusterSend(_ arguments: [RedisArgument], to original: ClusterTarget, on cluster: ClusterRouter) async throws -> RedisReply {
        var route = ClusterRoute(original, within: configuration.commandTimeout)
        while true {
            let node = try await cluster.node(for: route.target)
            let reply: RedisReply
            if route.asking {
                reply = try await reportingFailures(at: node.address) {
                    try await node.pool.onShared { connection in try await connection.pipeline([["ASKING"], arguments]) }[1]
                }
            } else {
                reply = try await send(arguments, on: node.pool)
            }
            guard case .resend(let pause) = route.next(after: reply, from: node.address, on: cluster) else { return reply }
            if pause > .zero { try await Task.sleep(for: pause) }
        }
    }

    /// ``clusterPipeline(_:targets:on:)`` for the async API: every node's part at once.
    func clusterPipeline(_ commands: [[RedisArgument]], targets: [ClusterTarget]? = nil, on cluster: ClusterRouter) async throws -> [RedisReply] {
        var replies = [RedisReply](repeating: .null, count: commands.count)
        for step in Self.pipelineSteps(commands, targets: targets) {
            switch step {
            case .segment(let segment): try await runSegment(segment, of: commands, into: &replies, on: cluster)
            case .alone(let index): replies[index] = try await clusterSend(commands[index], on: cluster)
            }
        }
        return replies
    }

    private func runSegment(
        _ segment: [(index: Int, target: ClusterTarget)], of commands: [[RedisArgument]], into replies: inout [RedisReply],
        on cluster: ClusterRouter
    ) async throws {
        guard !segment.isEmpty else { return }
        _ = try await cluster.node(for: .anyMaster)  // the first discovery, off the cooperative pool
        let groups = try Self.groupByNode(segment, on: cluster)
        let parts = groups.map { group in (group.node.pool, group.indices.map { commands[$0] }) }
        let partReplies = try await concurrently(parts.count) { index in try await self.pipeline(parts[index].1, on: parts[index].0) }
        for (group, part) in zip(groups, partReplies) {
            for (index, reply) in zip(group.indices, part) { replies[index] = reply }
        }
        for (index, target) in segment where Self.isRedirect(replies[index]) {
            replies[index] = try await clusterSend(commands[index], to: target, on: cluster)
        }
    }

    /// Runs `body` for `0..<count` at once; results in index order.
    private func concurrently<R: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) async throws -> R) async throws -> [R] {
        if count == 1 { return [try await body(0)] }
        return try await withThrowingTaskGroup(of: (Int, R).self) { group in
            for index in 0..<count { group.addTask { (index, try await body(index)) } }
            var results = [R?](repeating: nil, count: count)
            for try await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
    }

    // MARK: Shared

    /// One step of a cluster pipeline.
    private enum PipelineStep {
        /// Commands that each go to one node: pipelined per node.
        case segment([(index: Int, target: ClusterTarget)])
        /// A command split or sent to several masters: run on its own.
        case alone(Int)
    }

    /// `commands` cut into steps, in order: runs of single-node commands
    /// (routed by `targets` when given, else by their keys) between the
    /// commands that run alone.
    private static func pipelineSteps(_ commands: [[RedisArgument]], targets: [ClusterTarget]?) -> [PipelineStep] {
        var steps: [PipelineStep] = []
        var segment: [(index: Int, target: ClusterTarget)] = []
        for index in commands.indices {
            if let target = targets?[index] ?? singleNodeTarget(of: commands[index]) {
                segment.append((index, target))
                continue
            }
            if !segment.isEmpty { steps.append(.segment(segment)) }
            segment = []
            steps.append(.alone(index))
        }
        if !segment.isEmpty { steps.append(.segment(segment)) }
        return steps
    }

    /// Where a pipelined command goes, or `nil` for the commands that are
    /// split or sent to several masters.
    private static func singleNodeTarget(of command: [RedisArgument]) -> ClusterTarget? {
        switch ClusterCommand.route(of: command) {
        case .key(let index): .slot(ClusterSlot.of(command[index]))
        case .anyMaster: .anyMaster
        case .multiKey, .everyMaster, .scan: nil
        }
    }

    private static func isRedirect(_ reply: RedisReply) -> Bool {
        guard case .error = reply else { return false }
        return ClusterRedirect(reply, from: .tcp(host: "127.0.0.1", port: 1)) != nil
    }

    /// The `SCAN` reply of a finished cluster scan (cursor 0, no keys).
    private static let finishedScan = RedisReply.array([.bulk(Array("0".utf8)), .array([])])

    /// The node's page of a cluster `SCAN`: its own cursor in place of the
    /// caller's; `nil` when the cursor is past the last master.
    private func scanArguments(
        _ arguments: [RedisArgument], masters: [ClusterNode]
    ) throws(RedisError) -> (arguments: [RedisArgument], cursor: ClusterScanCursor)? {
        guard arguments.count >= 2, let raw = arguments[1].withBytes({ UInt64(String(decoding: $0, as: UTF8.self)) }) else {
            throw RedisError(.invalidArgument, "SCAN needs a cursor: 0, or one a cluster SCAN returned")
        }
        let cursor = ClusterScanCursor(raw)
        guard cursor.master < masters.count else { return nil }
        var page = arguments
        page[1] = RedisArgument(cursor.nodeCursor)
        return (page, cursor)
    }

    /// A node's `SCAN` reply with the cluster cursor in place of the node's.
    private func scanReply(_ reply: RedisReply, cursor: ClusterScanCursor, masters: Int) throws(RedisError) -> RedisReply {
        guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].string.flatMap({ UInt64($0) }) else { return reply }
        let combined = try ClusterScanCursor.after(master: cursor.master, next: next, masters: masters)
        return .array([.bulk(Array(String(combined).utf8)), parts[1]])
    }
}

import Dispatch
import Foundation
import Logging

/// Learns of a Sentinel failover before the first error: stays subscribed
/// to `+switch-master` on one sentinel (an event-loop connection, so no
/// thread waits on it), and asks for the master's address once a second in
/// case a message is lost or the subscription is down. Either makes the
/// router rediscover. Started with the first discovery; stopped with the
/// client (its thread ends within a second).
final class SentinelWatcher: Sendable {
    private let masterName: String
    private let configuration: RedisConfiguration
    private let logger: Logger

    private struct State {
        var started = false
        var stopped = false
        var subscription: EventLoopConnection?
        var subscribing = false
        /// Which sentinel the next subscription tries, round-robin.
        var nextSentinel = 0
    }

    private let state = PlainMutex(State())
    /// How often the watcher asks for the master's address.
    static let pollInterval: Duration = .seconds(1)

    init(masterName: String, configuration: RedisConfiguration, logger: Logger) {
        self.masterName = masterName
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts watching for `router`, once; the watcher holds it weakly.
    func start(router: SentinelRouter) {
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started && !state.stopped
        }
        guard first else { return }
        startThread(named: "baldur-sentinel") { [weak router, self] in
            // One sentinel connection for the polls, kept while it works; this thread's alone.
            var pollConnection: RedisConnection?
            defer { pollConnection?.close() }
            while let router, !state.withLock({ $0.stopped }) {
                subscribe(router: router)
                if let named = router.currentlyNamedMaster(reusing: &pollConnection), named != router.masterAddress {
                    do { try router.refresh(reason: "a sentinel names \(named)") } catch {
                        logger.debug("redis sentinel rediscovery failed", metadata: ["error": "\(error)"])
                    }
                }
                Thread.sleep(forTimeInterval: Double(Self.pollInterval.components.seconds))
            }
        }
    }

    /// Stops watching: closes the subscription; the polling thread ends
    /// after its current sleep.
    func stop() {
        let subscription = state.withLock { state -> EventLoopConnection? in
            state.stopped = true
            defer { state.subscription = nil }
            return state.subscription
        }
        subscription?.closeSoon()
    }

    /// Opens the `+switch-master` subscription when there is none.
    private func subscribe(router: SentinelRouter) {
        let sentinels = router.sentinels
        guard !sentinels.isEmpty else { return }
        let target = state.withLock { state -> RedisServerAddress? in
            if let current = state.subscription, !current.isOpen { state.subscription = nil }
            guard !state.stopped, state.subscription == nil, !state.subscribing else { return nil }
            state.subscribing = true
            defer { state.nextSentinel += 1 }
            return sentinels[state.nextSentinel % sentinels.count]
        }
        guard let target else { return }
        let masterName = masterName
        let onPush: @Sendable (RedisReply) -> Void = { [weak router] reply in
            // ["message", "+switch-master", "<name> <old-ip> <old-port> <new-ip> <new-port>"]
            guard let parts = reply.array, parts.count == 3, parts[0].string == "message",
                  let text = parts[2].string, text.hasPrefix(masterName + " "), let router else { return }
            SentinelRouter.queue.async {
                try? router.refresh(reason: "+switch-master: \(text)")
            }
        }
        let onClose: @Sendable (RedisError) -> Void = { [self] _ in
            state.withLock { $0.subscription = nil }
        }
        Task.detached { [self, configuration] in
            var sentinelConfiguration = configuration
            sentinelConfiguration.topology = .standalone(target)
            let opened: EventLoopConnection?
            do {
                let connection = try await Connector.open(target, configuration: sentinelConfiguration, dedicated: true, onPush: onPush, onClose: onClose)
                try connection.sendWithoutReply(["SUBSCRIBE", "+switch-master"])
                opened = connection
            } catch {
                logger.debug("redis sentinel subscription failed", metadata: ["redis.address": "\(target)", "error": "\(error)"])
                opened = nil
            }
            let keep = state.withLock { state -> Bool in
                state.subscribing = false
                guard let opened, !state.stopped, opened.isOpen else { return false }
                state.subscription = opened
                return true
            }
            if !keep { opened?.closeSoon() }
        }
    }
}

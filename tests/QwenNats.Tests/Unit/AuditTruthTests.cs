using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QwenNats.Messaging;
using QwenNats.Promoter;
using QwenNats.ServiceDefaults;

namespace QwenNats.Tests.Unit;

/// <summary>
/// The state change and its audit record must never disagree without the operator being told: the state is
/// written first; when the audit append fails the answer says the state changed and the record is pending,
/// and a later repair appends it (or, after a leader change, a repair record built from the state).
/// </summary>
public sealed class AuditTruthTests
{
    private sealed class MemoryLog : IRolloutLog
    {
        public RolloutState State = new() { Live = "blue", Reason = "initial state", Actor = "promoter" };
        public ulong Revision = 1;
        public bool AppendFails;
        public int AppendCalls;
        public readonly List<RolloutEvent> Events = [];

        public Task<(RolloutState State, ulong Revision)> GetAsync(CancellationToken ct) => Task.FromResult((State, Revision));

        public Task<bool> TryUpdateAsync(RolloutState state, ulong revision, CancellationToken ct)
        {
            if (revision != Revision) return Task.FromResult(false);
            State = state;
            Revision++;
            return Task.FromResult(true);
        }

        public Task AppendAsync(RolloutEvent e, CancellationToken ct)
        {
            AppendCalls++;
            if (AppendFails) throw new IOException("audit stream unavailable");
            if (!Events.Any(x => x.State.RolloutId == e.State.RolloutId && x.State.Version == e.State.Version))
                Events.Add(e);
            return Task.CompletedTask;
        }

        public Task<IReadOnlyList<RolloutEvent>> HistoryAsync(int limit, CancellationToken ct) => Task.FromResult<IReadOnlyList<RolloutEvent>>(Events.TakeLast(limit).ToList());
    }

    private static RolloutChanges Changes(MemoryLog log, TimeProvider? clock = null) => new(log,
        new PromoterSettings(new PromoterOptions { AuditAppendTimeout = TimeSpan.FromMilliseconds(800) }, RolloutPolicy.Load(null), null),
        new PromoterMetrics(new QwenMetrics()), clock ?? TimeProvider.System, NullLogger<RolloutChanges>.Instance);

    /// <summary>Moves the clock 10 ms at a time until the change is answered (the append's time allowed passes on it).</summary>
    private static async Task<ControlReply> OnClockAsync(FakeTimeProvider clock, Task<ControlReply> changing)
    {
        for (var steps = 0; !changing.IsCompleted; steps++)
        {
            Assert.True(steps < 1000, "the append was not given up after the time allowed");
            clock.Advance(TimeSpan.FromMilliseconds(10));
            await Task.Delay(2);
        }
        return await changing;
    }

    [Fact]
    public async Task A_change_whose_audit_append_succeeds_is_answered_plainly_and_recorded_once()
    {
        var log = new MemoryLog();
        var reply = await Changes(log).ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None);

        Assert.True(reply.Ok);
        Assert.Null(reply.Code);
        Assert.Equal(RolloutPhase.Shadow, log.State.Phase);
        Assert.Equal(log.State.Version, Assert.Single(log.Events).State.Version);
    }

    [Fact]
    public async Task When_the_append_keeps_failing_the_answer_says_the_state_changed_and_a_later_repair_writes_the_record()
    {
        var log = new MemoryLog { AppendFails = true };
        // The time allowed for the append (800 ms) and the back-off between tries pass on a clock the test moves, 10 ms
        // at a time: how many tries fit does not depend on how busy the machine is.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var changes = Changes(log, clock);

        var changing = changes.ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None);
        for (var steps = 0; !changing.IsCompleted; steps++)
        {
            Assert.True(steps < 1000, "the append was not given up after the time allowed");
            clock.Advance(TimeSpan.FromMilliseconds(10));
            await Task.Delay(2);
        }
        var reply = await changing;

        // The state did change, and the answer says so rather than "nothing was changed".
        Assert.Equal(RolloutPhase.Shadow, log.State.Phase);
        Assert.True(reply.Ok);
        Assert.Equal(RolloutChanges.AuditPendingCode, reply.Code);
        Assert.Equal(log.State, reply.State);
        Assert.Contains("state changed", reply.Error);
        Assert.True(log.AppendCalls > 1, "the append is retried before giving up");
        Assert.Empty(log.Events);
        Assert.Single(changes.Pending);

        // Still failing: the repair keeps the record pending.
        await changes.RepairAuditAsync(checkState: false, CancellationToken.None);
        Assert.Single(changes.Pending);

        log.AppendFails = false;
        await changes.RepairAuditAsync(checkState: false, CancellationToken.None);
        Assert.Empty(changes.Pending);
        var e = Assert.Single(log.Events);
        Assert.Equal("start", e.Trigger);
        Assert.Equal(log.State.Version, e.State.Version);
        Assert.Equal("alice", e.Actor);
    }

    [Fact]
    public async Task A_change_made_while_older_records_are_pending_is_recorded_after_them_and_a_promoter_that_steps_down_forgets_them()
    {
        var log = new MemoryLog { AppendFails = true };
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var changes = Changes(log, clock);
        Assert.Equal(RolloutChanges.AuditPendingCode, (await OnClockAsync(clock, changes.ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None))).Code);

        // The audit stream is back before the next tick repaired the log: the next change writes the pending record first.
        log.AppendFails = false;
        var next = await changes.ChangeAsync("set-weight", r => r.SetWeight(10, "more", "alice"), "operator", "p1", CancellationToken.None);
        Assert.Null(next.Code);
        Assert.Empty(changes.Pending);
        Assert.Equal(["start", "set-weight"], log.Events.Select(e => e.Trigger));
        Assert.Equal([log.State.Version - 1, log.State.Version], log.Events.Select(e => e.State.Version));

        // A record still pending when this promoter stops leading is dropped: appended when it leads again (perhaps days
        // later), it would come after the records other leaders wrote meanwhile; the next leader repairs from the state.
        log.AppendFails = true;
        await OnClockAsync(clock, changes.ChangeAsync("pause", r => r.Pause("hold", "alice"), "operator", "p1", CancellationToken.None));
        Assert.Single(changes.Pending);
        changes.StepDown();
        Assert.Empty(changes.Pending);
    }

    [Fact]
    public async Task A_new_leader_records_a_change_whose_audit_record_was_lost_with_the_previous_leader()
    {
        var log = new MemoryLog { AppendFails = true };
        await Changes(log).ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None);
        Assert.Empty(log.Events);

        // The previous leader died with the record pending; the next one compares the log with the state.
        log.AppendFails = false;
        var successor = Changes(log);
        await successor.RepairAuditAsync(checkState: true, CancellationToken.None);

        var e = Assert.Single(log.Events);
        Assert.Equal(RolloutChanges.RepairTrigger, e.Trigger);
        Assert.Equal(log.State, e.State);
        Assert.Equal(RolloutPhase.Shadow, e.To);

        // Nothing missing: a further check appends nothing.
        await successor.RepairAuditAsync(checkState: true, CancellationToken.None);
        Assert.Single(log.Events);
    }

    [Fact]
    public async Task A_repair_for_several_lost_changes_names_every_missing_version()
    {
        var log = new MemoryLog();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var leader = Changes(log, clock);
        await leader.ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None);
        log.AppendFails = true;
        await OnClockAsync(clock, leader.ChangeAsync("pause", r => r.Pause("hold", "alice"), "operator", "p1", CancellationToken.None));
        await OnClockAsync(clock, leader.ChangeAsync("resume", r => r.Resume("go on", "alice"), "operator", "p1", CancellationToken.None));
        await OnClockAsync(clock, leader.ChangeAsync("rollback", r => r.Rollback("bad", "alice"), "operator", "p1", CancellationToken.None));
        Assert.Equal(4, log.State.Version);

        // The leader died with versions 2 to 4 pending; the next one has only the latest state to record.
        log.AppendFails = false;
        await Changes(log).RepairAuditAsync(checkState: true, CancellationToken.None);

        Assert.Equal(2, log.Events.Count);
        var repair = log.Events[1];
        Assert.Equal(RolloutChanges.RepairTrigger, repair.Trigger);
        Assert.Equal(4, repair.State.Version);
        Assert.Contains("state versions 2 to 4 were missing (3 changes", repair.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_new_leader_finds_the_last_record_behind_many_access_events_and_adds_no_false_repair()
    {
        var log = new MemoryLog();
        await Changes(log).ChangeAsync("start", r => r.Start("green", "go", "alice"), "operator", "p1", CancellationToken.None);
        // Pins and testers' colour choices since then: access events, the state unchanged in each.
        for (var i = 0; i < 250; i++)
            log.Events.Add(new RolloutEvent { Trigger = i % 2 == 0 ? Rollouts.Verbs.Pin : "colour-choice", From = log.State.Phase, To = log.State.Phase, State = log.State });

        await Changes(log).RepairAuditAsync(checkState: true, CancellationToken.None);

        Assert.Equal(251, log.Events.Count);
        Assert.DoesNotContain(log.Events, e => e.Trigger == RolloutChanges.RepairTrigger);
    }
}

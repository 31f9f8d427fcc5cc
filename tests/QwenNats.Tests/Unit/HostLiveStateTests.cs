using QwenNats.Messaging;

namespace QwenNats.Tests.Unit;

/// <summary>When a candidate that yields to live work on its machine may run mirrored work (<see cref="HostLiveState"/>).</summary>
public sealed class HostLiveStateTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 27, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan IdleAfter = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan StaleAfter = TimeSpan.FromSeconds(3);

    private static HostLiveLoad Load(string worker, int live, long seq) => new() { WorkerId = worker, Colour = "blue", Live = live, Sequence = seq };

    [Fact]
    public void With_no_report_mirrors_may_run()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        Assert.True(s.MayRunMirrors(T0, out _));
    }

    [Fact]
    public void Live_work_holds_mirrors_back_until_it_has_stopped_for_the_idle_time()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        Assert.True(s.Observe(Load("live-1", 1, 1), T0));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(1), out var recheck));
        Assert.True(recheck > TimeSpan.Zero);

        Assert.True(s.Observe(Load("live-1", 0, 2), T0 + TimeSpan.FromSeconds(2)));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromMilliseconds(2050), out recheck));
        Assert.Equal(TimeSpan.FromMilliseconds(50), recheck);
        Assert.True(s.MayRunMirrors(T0 + TimeSpan.FromMilliseconds(2100), out _));
    }

    [Fact]
    public void Any_busy_worker_of_the_machine_holds_mirrors_back()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        s.Observe(Load("live-1", 1, 1), T0);
        s.Observe(Load("live-2", 2, 1), T0);
        s.Observe(Load("live-1", 0, 2), T0 + TimeSpan.FromMilliseconds(10));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(1), out _));
        s.Observe(Load("live-2", 0, 2), T0 + TimeSpan.FromSeconds(1));
        Assert.True(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(2), out _));
    }

    [Fact]
    public void The_workers_own_live_work_does_not_hold_its_mirrors_back()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        Assert.False(s.Observe(Load("me", 1, 1), T0));
        Assert.True(s.MayRunMirrors(T0, out _));
    }

    [Fact]
    public void A_live_worker_that_restarted_under_the_same_id_is_heard_although_its_sequence_starts_again()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        s.Observe(Load("live-1", 0, 5000) with { Epoch = "first" }, T0);
        Assert.True(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(1), out _));
        // The same worker id, a new process: its first report says it runs live work.
        Assert.True(s.Observe(Load("live-1", 1, 1) with { Epoch = "second" }, T0 + TimeSpan.FromSeconds(2)));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(2), out _));
        // Within one process the order still counts.
        Assert.False(s.Observe(Load("live-1", 0, 0) with { Epoch = "second" }, T0 + TimeSpan.FromSeconds(2)));
    }

    [Fact]
    public void A_report_older_than_one_already_seen_is_ignored()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        s.Observe(Load("live-1", 1, 3), T0);
        Assert.False(s.Observe(Load("live-1", 0, 2), T0 + TimeSpan.FromMilliseconds(5)));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(1), out _));
    }

    [Fact]
    public void A_busy_report_that_is_not_renewed_goes_stale()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        s.Observe(Load("live-1", 1, 1), T0);
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(2), out var recheck));
        // Stale at T0 + 3 s, then the idle time: 1.1 s from T0 + 2 s.
        Assert.Equal(TimeSpan.FromMilliseconds(1100), recheck);
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromMilliseconds(3050), out _));
        Assert.True(s.MayRunMirrors(T0 + TimeSpan.FromMilliseconds(3100), out _));
    }

    [Fact]
    public void A_renewed_busy_report_keeps_mirrors_held_back()
    {
        var s = new HostLiveState("me", IdleAfter, StaleAfter);
        s.Observe(Load("live-1", 1, 1), T0);
        s.Observe(Load("live-1", 1, 2), T0 + TimeSpan.FromSeconds(2));
        Assert.False(s.MayRunMirrors(T0 + TimeSpan.FromSeconds(4), out _));
    }

    [Fact]
    public void Host_names_become_one_subject_token()
    {
        Assert.Equal("qwen.host.box-1.live", Subjects.HostLive("box-1"));
        Assert.Equal("qwen.host.node_2_example_com.live", Subjects.HostLive("node 2.example.com"));
        Assert.Equal("qwen.host._.live", Subjects.HostLive(" "));
    }
}

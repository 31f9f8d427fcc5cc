using System.Runtime.InteropServices;
using LLama.Native;

namespace QwenNats.Worker;

/// <summary>
/// Charges CPU time to the requests that caused it. Wall-clock latency of one colour against another is
/// confounded on a shared machine (whichever process the scheduler favours looks faster, whichever pool is
/// busier queues longer); the CPU time a decode step costs is not. The decode runs on the decode loop's thread
/// inside llama.cpp; a compute callback that llama.cpp calls after every graph node reads that thread's CPU
/// clock, so a step's figure is the compute thread's own time, whatever else runs in the process or on the
/// machine. Each step's time is split among the requests in it by a cost model the worker measures for its own
/// build at load (<see cref="StepCostModel"/>), and each request is also charged its own sampling. See docs/judge.md.
/// </summary>
public sealed unsafe class ComputeCost : IDisposable
{
    private GCHandle _self;
    private TimeSpan _first, _last;
    private bool _started;

    public ComputeCost() => _self = GCHandle.Alloc(this);

    /// <summary>Hooks the meter into a context (again after every context reset).</summary>
    public void Attach(SafeLLamaContextHandle context)
    {
        if (!ThreadCpu.Supported)
            return;
        delegate* unmanaged<IntPtr, byte> callback = &OnNode;
        NativeApi.llama_set_abort_callback(context, (IntPtr)callback, GCHandle.ToIntPtr(_self));
    }

    /// <summary>Starts measuring one decode step.</summary>
    public void Begin() => _started = false;

    /// <summary>The compute thread's CPU time between the first and the last graph node of the step.</summary>
    public TimeSpan End() => _started ? _last - _first : TimeSpan.Zero;

    [UnmanagedCallersOnly]
    private static byte OnNode(IntPtr data)
    {
        if (GCHandle.FromIntPtr(data).Target is ComputeCost meter)
        {
            var now = ThreadCpu.Now();
            if (!meter._started)
            {
                meter._first = now;
                meter._started = true;
            }
            meter._last = now;
        }
        return 0; // never abort
    }

    /// <summary>What a step costs on this build, learnt from the steps measured so far.</summary>
    public StepCostModel Model { get; } = new();

    /// <summary>Records a step that no request is charged for (calibration at load).</summary>
    public void Observe(StepPart whole, TimeSpan used) => Model.Observe(whole, used.TotalMilliseconds);

    /// <summary>
    /// Charges a step's cost to its participants: each is charged what its part would have cost alone (see
    /// <see cref="StepCostModel.Split"/>), so batching neither halves nor doubles a request's cost, and its part is
    /// added to the work it reports. When one participant has a <see cref="EngineJob.CostFactor"/> above 1
    /// (fault injection), the extra compute is burnt on the decode loop's thread first, so the step really is that
    /// much dearer for everyone in it.
    /// </summary>
    public void Charge(IReadOnlyList<EngineJob> participants, TimeSpan used)
    {
        if (participants.Count == 0)
            return;
        var factor = participants.Max(j => j.CostFactor);
        if (factor > 1)
            used += Burn(used * (factor - 1));
        var parts = new StepPart[participants.Count];
        for (var i = 0; i < parts.Length; i++)
            parts[i] = participants[i].Pending;
        var charges = Model.Split(parts, used.TotalMilliseconds);
        for (var i = 0; i < parts.Length; i++)
        {
            participants[i].Charge(charges[i], parts[i]);
            participants[i].Pending = default;
        }
    }

    /// <summary>Charges a request's own sampling (on the decode loop's thread), with its fault factor.</summary>
    public static void ChargeSampling(EngineJob job, TimeSpan used)
    {
        if (job.CostFactor > 1)
            used += Burn(used * (job.CostFactor - 1));
        job.ChargeSampling(used);
    }

    /// <summary>Spins on this thread until it has used <paramref name="cpu"/> more CPU time (bounded in wall time).</summary>
    private static TimeSpan Burn(TimeSpan cpu)
    {
        if (cpu <= TimeSpan.Zero)
            return TimeSpan.Zero;
        var start = ThreadCpu.Now();
        var wall = System.Diagnostics.Stopwatch.StartNew();
        var bound = cpu * 50 + TimeSpan.FromMilliseconds(50);
        var x = 0.0;
        while (ThreadCpu.Now() - start < cpu && wall.Elapsed < bound)
        {
            for (var i = 0; i < 500; i++)
                x += Math.Sqrt(i + x);
        }
        GC.KeepAlive(x);
        return ThreadCpu.Now() - start;
    }

    public void Dispose()
    {
        if (_self.IsAllocated)
            _self.Free();
    }
}

/// <summary>The calling thread's CPU clock (Linux <c>CLOCK_THREAD_CPUTIME_ID</c>).</summary>
public static partial class ThreadCpu
{
    private const int ClockThreadCpuTimeId = 3;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    [UnmanagedCallConv(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static partial int ClockGetTime(int clock, out Timespec time);

    public static bool Supported { get; } = OperatingSystem.IsLinux() && Probe();

    private static bool Probe()
    {
        try
        {
            return ClockGetTime(ClockThreadCpuTimeId, out _) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>CPU time used by the calling thread so far; zero where the clock is not available.</summary>
    public static TimeSpan Now()
    {
        if (!Supported || ClockGetTime(ClockThreadCpuTimeId, out var t) != 0)
            return TimeSpan.Zero;
        return TimeSpan.FromTicks(t.Seconds * TimeSpan.TicksPerSecond + t.Nanoseconds / 100);
    }
}

using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>
/// One loaded model and profile the worker can serve: its engine, the release it is (null for a model given on the
/// command line) and that release's fault injection. Counts the requests using it, so retiring it after a switch
/// waits for them to finish before the engine's memory is freed.
/// </summary>
public sealed class LoadedRelease(LlamaEngine engine, Release? release, FaultInjector faults)
{
    private int _users;
    private volatile bool _retired;
    private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LlamaEngine Engine { get; } = engine;
    public Release? Release { get; } = release;
    public FaultInjector Faults { get; } = faults;
    public string? ReleaseId => Release?.Id;

    /// <summary>What this serves (model, whole profile, effective faults) as one digest; golden results are stored under it.</summary>
    public string Fingerprint { get; } = GoldenKeys.Fingerprint(engine.Model.Sha256, engine.Profile, faults.Options);

    public AnswerStamp Stamp(string workerId, string colour) =>
        new(workerId, colour, Engine.Model.Id, Engine.Profile.Version, Release?.Id, Engine.Model.Sha256, Fingerprint);

    /// <summary>Takes it for one request; false once it is retired (take the current one instead).</summary>
    public bool TryAcquire()
    {
        Interlocked.Increment(ref _users);
        if (!_retired) return true;
        Return();
        return false;
    }

    public void Return()
    {
        if (Interlocked.Decrement(ref _users) == 0 && _retired)
            _idle.TrySetResult();
    }

    public int Users => Volatile.Read(ref _users);

    /// <summary>No new requests; waits up to <paramref name="drain"/> for those in flight, then frees the engine.</summary>
    public async Task RetireAsync(TimeSpan drain)
    {
        _retired = true;
        // A full fence between the write and the read (TryAcquire has one between its increment and its read): without
        // it the read could be done first, and an acquire that saw "not retired" could run on the engine being freed.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _users) == 0) _idle.TrySetResult();
        await Task.WhenAny(_idle.Task, Task.Delay(drain));
        await Engine.DisposeAsync();
    }
}

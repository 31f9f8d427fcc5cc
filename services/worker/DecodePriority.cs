using System.Reflection;
using System.Runtime.InteropServices;
using LLama.Batched;
using LLama.Native;

namespace QwenNats.Worker;

/// <summary>
/// The OS scheduling priority (nice value) of the calling thread. On Linux the nice value belongs to a thread,
/// and threads it creates (llama.cpp's OpenMP compute threads) inherit it. An unprivileged thread may raise its
/// own nice value but not lower it again, so a decode thread that must return to normal priority is replaced
/// by a fresh thread instead (see <see cref="LlamaEngine.SetCandidate"/>).
/// </summary>
public static partial class ThreadNice
{
    private const int PrioProcess = 0;

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    [UnmanagedCallConv(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static partial int SetPriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    [UnmanagedCallConv(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static partial int GetPriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "gettid")]
    [UnmanagedCallConv(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static partial int GetTid();

    /// <summary>Whether thread nice values can be read and set here (Linux).</summary>
    public static bool Supported { get; } = OperatingSystem.IsLinux() && Probe();

    private static bool Probe()
    {
        try
        {
            return GetTid() > 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>The calling thread's kernel id (what /proc/&lt;pid&gt;/task lists).</summary>
    public static int CurrentThreadId() => Supported ? GetTid() : 0;

    /// <summary>The calling thread's nice value (0 where not supported).</summary>
    public static int Current()
    {
        if (!Supported) return 0;
        Marshal.SetLastPInvokeError(0);
        var nice = GetPriority(PrioProcess, GetTid());
        return nice == -1 && Marshal.GetLastPInvokeError() != 0 ? 0 : nice;
    }

    /// <summary>Sets the calling thread's nice value; false when the OS refuses (lowering it needs privilege).</summary>
    public static bool TrySet(int nice)
    {
        if (!Supported) return false;
        return SetPriority(PrioProcess, GetTid(), Math.Clamp(nice, -20, 19)) == 0;
    }
}

/// <summary>
/// Runs <see cref="BatchedExecutor.Infer"/>'s decode on the calling thread. LLamaSharp's <c>Infer</c> hands
/// the decode to a thread-pool thread (<c>LLamaContext.DecodeAsync</c> is a <c>Task.Run</c>), so the priority of
/// the decode loop's thread would not reach llama.cpp's compute threads; this does the same steps as <c>Infer</c>
/// (take the next queued batch, advance the epoch, decode, requeue it on failure) with the decode on the caller.
/// It reads the executor's private members of LLamaSharp 0.30.0; when they are not found (another LLamaSharp
/// version) <see cref="Available"/> is false and the engine uses <c>Infer</c>, without thread priorities.
/// </summary>
public static class InlineDecode
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private static readonly MethodInfo? Next = Find("<Infer>g__GetNextBatch|");
    private static readonly MethodInfo? Requeue = Find("<Infer>g__RequeueFront|");
    private static readonly MethodInfo? Cleanup = Find("<Infer>g__CleanupQueue|");
    private static readonly PropertyInfo? Epoch = typeof(BatchedExecutor).GetProperty("Epoch", Private);
    private static readonly FieldInfo? TokenBatchField = typeof(BatchedExecutor).GetNestedType("TokenBatch", BindingFlags.NonPublic)?.GetField("Batch");

    public static bool Available { get; } =
        Next is { } n && n.GetParameters().Length == 0 && Requeue is { } r && r.GetParameters().Length == 1 && Cleanup is { } c && c.GetParameters().Length == 0
        && Epoch is { SetMethod: not null } e && e.PropertyType == typeof(ulong) && TokenBatchField?.FieldType == typeof(LLamaBatch);

    private static MethodInfo? Find(string prefix) =>
        typeof(BatchedExecutor).GetMethods(Private).SingleOrDefault(m => m.Name.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Decodes the executor's next queued batch on this thread (as <see cref="BatchedExecutor.Infer"/> would on another).</summary>
    public static DecodeResult Infer(BatchedExecutor executor)
    {
        ObjectDisposedException.ThrowIf(executor.IsDisposed, executor);
        var next = Next!.Invoke(executor, null);
        if (next is null)
            return DecodeResult.Ok;
        if (TokenBatchField!.DeclaringType!.IsInstanceOfType(next) is false)
        {
            Requeue!.Invoke(executor, [next]);
            throw new InvalidOperationException("Only token batches are decoded on the decode thread.");
        }
        var epoch = (ulong)Epoch!.GetValue(executor)!;
        if ((epoch & 1) == 1)
            Epoch.SetValue(executor, ++epoch);
        var status = executor.Context.Decode((LLamaBatch)TokenBatchField.GetValue(next)!);
        if (status != DecodeResult.Ok)
        {
            Requeue!.Invoke(executor, [next]);
            return status;
        }
        Epoch.SetValue(executor, epoch + 1);
        Cleanup!.Invoke(executor, null);
        return status;
    }
}

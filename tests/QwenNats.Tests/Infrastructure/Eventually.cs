namespace QwenNats.Tests.Infrastructure;

/// <summary>Waits for a condition that another process makes true (a watch delivering, a state applied), polling every 20 ms.</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        while (!await condition())
            await Task.Delay(20, cts.Token);
    }

    public static Task TrueAsync(Func<bool> condition, TimeSpan? timeout = null) => TrueAsync(() => Task.FromResult(condition()), timeout);
}

namespace QwenNats.Ingress;

/// <summary>Request ids, timestamps and the headers that name who served an answer.</summary>
public static class ServedBy
{
    public static string NewId(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public static void Stamp(HttpContext http, string colour, string? profile, string? worker, string requestId, string? release = null)
    {
        if (http.Response.HasStarted) return;
        if (release is not null) http.Response.Headers[RequestRouting.ReleaseHeader] = release;
        http.Response.Headers[RequestRouting.ColourHeader] = colour;
        if (profile is not null) http.Response.Headers[RequestRouting.ProfileHeader] = profile;
        if (worker is not null) http.Response.Headers[RequestRouting.WorkerHeader] = worker;
        http.Response.Headers[RequestRouting.RequestIdHeader] = requestId;
    }

    /// <summary>Non-streamed chat: how many of the oldest messages the worker left out to fit the context.</summary>
    public static void Trimmed(HttpContext http, int trimmed)
    {
        if (trimmed > 0 && !http.Response.HasStarted) http.Response.Headers[RequestRouting.TrimmedHeader] = trimmed.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}

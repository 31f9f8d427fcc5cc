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
}

using System.Globalization;
using System.Security.Cryptography;

namespace QwenNats.Ingress.Routing;

/// <summary>
/// A session id the ingress made up for a request that named no session:
/// <c>q1-&lt;state version&gt;-&lt;unix seconds&gt;-&lt;24 lowercase hex&gt;</c> (decimal numbers, no sign, no leading zeros;
/// at most 67 characters). It carries the rollout state version the ingress routed the session's first request under
/// and the time it was made, from which <see cref="RoutingPolicy.ImplicitPin"/> derives the session's pin while KV
/// holds none. Pure: the format, its parse and its checks, and nothing else.
/// </summary>
/// <remarks>
/// Anyone can send an id in this format (the cookie is the client's); that is harmless by construction: such an id
/// can only yield the live colour or, during a bake window, the previous live colour, never the candidate (see
/// <see cref="RoutingPolicy.ImplicitPin"/>). The 96 random bits keep made-up sessions apart, as a GUID did.
/// </remarks>
public readonly record struct MadeSessionId(long Version, DateTimeOffset MadeAt)
{
    public const string Prefix = "q1-";
    private const int RandomHexChars = 24;

    /// <summary>A new id for a session first routed under state <paramref name="version"/> at <paramref name="now"/>.</summary>
    public static string New(long version, DateTimeOffset now)
    {
        Span<byte> random = stackalloc byte[RandomHexChars / 2];
        RandomNumberGenerator.Fill(random);
        return Format(version, now, random);
    }

    /// <summary>The id of <paramref name="version"/> and <paramref name="madeAt"/> (whole seconds) with these random bytes.</summary>
    public static string Format(long version, DateTimeOffset madeAt, ReadOnlySpan<byte> random)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        if (random.Length != RandomHexChars / 2)
            throw new ArgumentException($"A made-up session id takes {RandomHexChars / 2} random bytes, not {random.Length}.", nameof(random));
        var seconds = madeAt.ToUnixTimeSeconds();
        ArgumentOutOfRangeException.ThrowIfNegative(seconds, nameof(madeAt));
        return string.Create(CultureInfo.InvariantCulture, $"{Prefix}{version}-{seconds}-{Convert.ToHexStringLower(random)}");
    }

    /// <summary>
    /// Whether <paramref name="id"/> is in the format (exactly as <see cref="Format"/> writes it); false for anything
    /// else: ids clients choose, truncated or altered ids, numbers that overflow, times no calendar holds.
    /// </summary>
    public static bool TryParse(string? id, out MadeSessionId made)
    {
        made = default;
        if (id is null || !id.StartsWith(Prefix, StringComparison.Ordinal))
            return false;
        var parts = id[Prefix.Length..].Split('-');
        if (parts.Length != 3
            || !TryParseNumber(parts[0], out var version)
            || !TryParseNumber(parts[1], out var seconds)
            || parts[2].Length != RandomHexChars
            || !parts[2].All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
            return false;
        if (seconds > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
            return false;
        made = new MadeSessionId(version, DateTimeOffset.FromUnixTimeSeconds(seconds));
        return true;
    }

    /// <summary>
    /// Whether the session may still hold the pin its id carries: made less than <paramref name="idle"/> (the pins
    /// bucket's idle TTL, after which a KV pin would be gone too) before <paramref name="now"/>, and not later than
    /// <paramref name="maxClockSkew"/> after it (another ingress's clock may run ahead a little; an id from further
    /// in the future was not made by an ingress).
    /// </summary>
    public bool IsFresh(DateTimeOffset now, TimeSpan idle, TimeSpan maxClockSkew)
    {
        var age = now - MadeAt;
        return age < idle && -age <= maxClockSkew;
    }

    /// <summary>A non-negative decimal number as <see cref="Format"/> writes it: digits only, no leading zero, no overflow.</summary>
    private static bool TryParseNumber(string s, out long value)
    {
        value = 0;
        return s.Length is > 0 and <= 19
            && (s.Length == 1 || s[0] != '0')
            && s.All(char.IsAsciiDigit)
            && long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}

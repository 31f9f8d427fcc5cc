using System.Text.Json;
using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// The operator API's verbs (served on <c>qwen.ctl.&lt;verb&gt;</c> by <see cref="Messaging.Control.ControlEndpoints"/>
/// while this promoter leads): validates the request and applies it; refusals change nothing.
/// </summary>
public sealed class ControlCommands(RolloutStore store, RolloutChanges changes, GoldenRunner golden, LeaderLease lease, PromoterSettings settings,
    TimeProvider clock, ILogger<ControlCommands> logger)
{
    private PromoterOptions O => settings.Options;

    /// <summary>One operator command, its body exactly as sent.</summary>
    public async Task<ControlReply> HandleAsync(string verb, byte[]? body, CancellationToken ct)
    {
        var id = lease.Holder;
        ControlRequest request;
        try
        {
            request = body is { Length: > 0 } && !IsBlank(body)
                ? JsonSerializer.Deserialize(body, QwenJsonContext.Default.ControlRequest) ?? new ControlRequest()
                : new ControlRequest();
        }
        catch (JsonException e)
        {
            return ControlReply.Refused("invalid_json", $"The request is not valid JSON for {verb}: {e.Message.Split(". ")[0]}.");
        }

        if (TextProblem(request) is { } problem)
            return ControlReply.Refused("invalid_request", problem);
        var reason = Trim(request.Reason) ?? "";
        var actor = Trim(request.Actor) ?? "operator";
        switch (verb)
        {
            case Rollouts.Verbs.Status:
                return new ControlReply { Ok = true, State = (await store.GetAsync(ct)).State, Verdict = await store.LatestVerdictAsync(ct), Leader = id };
            case Rollouts.Verbs.Golden:
                if (settings.Golden is null)
                    return ControlReply.Refused("not_configured", "No golden set is configured (Promoter:GoldenPath).");
                var colours = request.Colour is { } one ? [one] : O.Colours;
                if (colours.Any(c => !O.Colours.Contains(c, StringComparer.Ordinal)))
                    return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", O.Colours)}.");
                return new ControlReply { Ok = true, Golden = await golden.RunAsync(settings.Golden, colours, O.GoldenTimeout, ct), Leader = id };
            case Rollouts.Verbs.History:
                var limit = Math.Clamp(request.Limit ?? O.HistoryDefault, 1, O.HistoryMax);
                return new ControlReply { Ok = true, Events = await store.HistoryAsync(limit, ct), Leader = id };
            case Rollouts.Verbs.Pin:
                return await PinAsync(request, ct);
            case Rollouts.Verbs.Start:
                return await changes.ChangeAsync(verb, r => r.Start(Trim(request.Candidate), reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Promote:
                return await changes.ChangeAsync(verb, r => r.Promote(request.Full == true, reason, actor), "operator", id, ct);
            case Rollouts.Verbs.SetWeight:
                return await changes.ChangeAsync(verb, r => r.SetWeight(request.Weight, reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Pause:
                return await changes.ChangeAsync(verb, r => r.Pause(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Resume:
                return await changes.ChangeAsync(verb, r => r.Resume(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Rollback:
                return await changes.ChangeAsync(verb, r => r.Rollback(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Abort:
                return await changes.ChangeAsync(verb, r => r.Abort(reason, actor), "operator", id, ct);
            default:
                return ControlReply.Refused("unknown_verb", $"Unknown command '{(verb.Length > 32 ? verb[..32] : verb)}'; known: {string.Join(", ", Rollouts.Verbs.All)}.");
        }
    }

    private async Task<ControlReply> PinAsync(ControlRequest request, CancellationToken ct)
    {
        var session = Trim(request.Session);
        var colour = Trim(request.Colour);
        if (session is null || session.Length > 128)
            return ControlReply.Refused("invalid_request", "'session' is required (at most 128 characters).");
        if (colour is null || !O.Colours.Contains(colour, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", O.Colours)}.");
        var ttl = request.TtlSeconds is { } s ? TimeSpan.FromSeconds(s) : O.DefaultPinTtl;
        if (ttl <= TimeSpan.Zero || ttl > O.MaxPinTtl)
            return ControlReply.Refused("invalid_request", $"'ttl_seconds' must be between 1 and {(int)O.MaxPinTtl.TotalSeconds}.");
        var now = clock.GetUtcNow();
        var pin = new SessionPin { Colour = colour, PinnedAt = now, By = "operator", ExpiresAt = now + ttl };
        await store.Sessions.PutAsync(SessionKeys.For(session), pin, cancellationToken: ct);
        PromoterLog.Pinned(logger, colour, ttl);
        return new ControlReply { Ok = true, Pin = pin, Leader = lease.Holder };
    }

    /// <summary>Free-text fields end up in the audit log: bounded, and without control characters.</summary>
    private string? TextProblem(ControlRequest r)
    {
        foreach (var (name, value) in new[] { ("reason", r.Reason), ("actor", r.Actor), ("candidate", r.Candidate), ("session", r.Session), ("colour", r.Colour) })
        {
            if (value is null) continue;
            if (value.Length > O.MaxTextChars)
                return $"'{name}' is longer than {O.MaxTextChars} characters.";
            if (value.Any(char.IsControl))
                return $"'{name}' contains control characters.";
        }
        return null;
    }

    private static string? Trim(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    private static bool IsBlank(byte[] body) => body.All(b => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') || body is [(byte)'\'', (byte)'\''];
}

using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using QwenNats.Messaging;

namespace QwenNats.Ingress.Routing;

/// <summary>
/// Records a tester's colour choice (<c>X-Qwen-Colour</c> / <c>?colour=</c>) in the audit log, QWEN_EVENTS, as a
/// <c>colour-choice</c> event beside the rollout's own: who chose which colour for which session, and the rollout's
/// state at the time. One record per (caller, session, colour) within the stream's duplicate window (JetStream
/// drops repeats by message id), so a tester's conversation is one record, not one per request. Published in the
/// background: a slow audit stream never delays the request; a failure is logged.
/// </summary>
public sealed partial class AccessAudit(INatsJSContext js, RolloutView view, TimeProvider clock, ILogger<AccessAudit> logger)
{
    public static readonly string Trigger = Rollouts.AccessTriggers[2];

    public void ColourChosen(string caller, string colour, string session, string path)
    {
        var state = view.Current;
        var e = new RolloutEvent
        {
            Trigger = Trigger, From = state.Phase, To = state.Phase, State = state,
            Reason = $"{caller} chose {colour} (live {state.Live}) for session {session} on {path}",
            Actor = caller, Cause = "tester", At = clock.GetUtcNow(),
        };
        var id = $"{Trigger}-{caller}-{session}-{colour}";
        _ = Task.Run(async () =>
        {
            try
            {
                var ack = await js.PublishAsync(Rollouts.Event(Trigger), e, opts: new NatsJSPubOpts { MsgId = id });
                ack.EnsureSuccess();
            }
            catch (Exception x)
            {
                Failed(logger, caller, colour, session, x);
            }
        });
    }

    [LoggerMessage(EventId = 1153, Level = LogLevel.Warning, Message = "The audit record of {Caller}'s choice of {Colour} for session {Session} could not be written")]
    private static partial void Failed(ILogger logger, string caller, string colour, string session, Exception e);
}

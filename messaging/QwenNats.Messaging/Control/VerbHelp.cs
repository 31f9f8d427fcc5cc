namespace QwenNats.Messaging.Control;

/// <summary>What each operator verb does, its JSON fields and examples: the help of <c>qwenctl</c> and the docs.</summary>
public static class VerbHelp
{
    public sealed record Entry(string Summary, string Fields, IReadOnlyList<string> Examples);

    public static readonly IReadOnlyDictionary<string, Entry> Verbs = new Dictionary<string, Entry>
    {
        [Rollouts.Verbs.Status] = new("the rollout state, the judge's latest verdict and the leading promoter", "none", ["status"]),
        [Rollouts.Verbs.Start] = new("start a rollout: the candidate colour enters Shadow (it gets mirrored traffic, clients still get live answers)",
            "candidate (colour, required), reason, actor", ["start '{\"candidate\":\"green\",\"reason\":\"profile v2\",\"actor\":\"alice\"}'"]),
        [Rollouts.Verbs.Promote] = new("next step: Shadow -> first canary step -> next steps -> Promoted; in Promoted it closes the bake window",
            "full (true: straight to Promoted), reason, actor", ["promote", "promote '{\"full\":true,\"reason\":\"looks good\"}'"]),
        [Rollouts.Verbs.SetWeight] = new("set the canary weight (percent of new sessions that get the candidate)",
            "weight (0-100, required), reason, actor", ["set-weight '{\"weight\":25}'"]),
        [Rollouts.Verbs.Pause] = new("hold the rollout where it is (the judge no longer moves it)", "reason, actor", ["pause '{\"reason\":\"look closer\"}'"]),
        [Rollouts.Verbs.Resume] = new("continue a paused rollout in the phase it was paused in", "reason, actor", ["resume"]),
        [Rollouts.Verbs.Rollback] = new("send everything back to the live colour at once (from Shadow, Canary, Paused or Promoted)",
            "reason, actor", ["rollback '{\"reason\":\"answers got colder\"}'"]),
        [Rollouts.Verbs.Abort] = new("cancel a rollout that is not yet promoted, back to Stable", "reason, actor", ["abort", "abort '{\"reason\":\"wrong profile\"}'"]),
        [Rollouts.Verbs.History] = new("the audit log: the latest rollout events", "limit (number of events)", ["history", "history '{\"limit\":20}'"]),
        [Rollouts.Verbs.Pin] = new("pin a session to a colour for a while (a tester's session to the candidate, and back); recorded in the audit log",
            "session (required), colour (required), ttl_seconds, reason, actor",
            ["pin '{\"session\":\"my-session\",\"colour\":\"green\",\"ttl_seconds\":600}'"]),
        [Rollouts.Verbs.Unpin] = new("remove a session's pin (its next request is routed by the rollout again); recorded in the audit log",
            "session (required), reason, actor", ["unpin '{\"session\":\"my-session\"}'"]),
        [Rollouts.Verbs.Golden] = new("run the golden sets (labelled sentiment cases, everyday chat prompts) on the colours' low-priority queues now: accuracy, chat errors and defects per colour; complete results are stored for the gate",
            "colour (one colour; default all), task (sentiment or chat; default both)",
            ["golden", "golden '{\"colour\":\"green\"}'", "golden '{\"task\":\"chat\"}'"]),
        [Rollouts.Verbs.Compare] = new("send the golden sets, or given inputs, to live and another colour on their low-priority queues: both answers side by side per input with every check, a summary and the gate's decision (qwenctl compare prints it as text)",
            "colour (compared with live; default the candidate, else the other colour), inputs (list of {id, task, text, label, lang, kind, max_tokens}; default the golden sets), task (sentiment or chat)",
            ["compare", "compare '{\"task\":\"chat\"}'", "compare '{\"inputs\":[{\"id\":\"a\",\"task\":\"chat\",\"text\":\"你好\"}]}'"]),
        [Rollouts.Verbs.Release] = new("register a release: a model (uploaded by digest: qwenctl upload) and a prompt profile under an id that never changes meaning",
            "release (id, required), model_sha256 (required), profile (object, required), notes, faults (a drill release)",
            ["release '{\"release\":\"v3\",\"model_sha256\":\"<sha256>\",\"profile\":{...},\"notes\":\"new system prompt\"}'"]),
        [Rollouts.Verbs.Releases] = new("list the releases (newest first) with the colours they are deployed to, and each pool's workers and readiness", "none", ["releases"]),
        [Rollouts.Verbs.Deploy] = new("assign a release to the idle colour: its workers fetch, load and warm it up, then switch (no restart); refused for the live colour and a rollout's candidate",
            "colour (required), release (required), bootstrap (true: only if the colour has no release yet), reason, actor",
            ["deploy '{\"colour\":\"green\",\"release\":\"v3\"}'", "deploy '{\"colour\":\"blue\",\"release\":\"v1\",\"bootstrap\":true}'"]),
    };
}

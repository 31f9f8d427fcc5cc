using System.Text.RegularExpressions;

namespace QwenNats.Tests.Unit;

/// <summary>
/// NATS subjects and reply-subject parsing live in the messaging library only: the services, the tools
/// and the bench use <c>Subjects</c>, <c>Rollouts</c> and <c>Judging</c>. This scans their C# sources
/// for string literals that start with <c>"qwen.</c> and for code that takes a subject apart at its dots.
/// </summary>
public sealed partial class SubjectLiteralTests
{
    /// <summary>The folders whose code must not spell subjects (the library under messaging/ may).</summary>
    private static readonly string[] Scanned = ["services", "tools", "bench"];

    // "qwen.…", $"qwen.…", @"qwen.…", $@"qwen.…", @$"qwen.…" and raw """qwen.…
    [GeneratedRegex("""(?:\$@?|@\$?)?"+qwen\.""")]
    private static partial Regex SubjectLiteral();

    // msg.Subject[(msg.Subject.LastIndexOf('.') + 1)..], subject.Split('.'), Subject.IndexOf(".") ...
    [GeneratedRegex("""(?i)subject\w*\??\s*\.\s*(?:Split|LastIndexOf|IndexOf)\s*\(\s*(?:'\.'|"\.")""")]
    private static partial Regex ReplyParsing();

    public static IEnumerable<(string File, int Line, string Text)> Offences(string root)
    {
        foreach (var folder in Scanned)
        {
            var dir = Path.Combine(root, folder);
            if (!Directory.Exists(dir)) continue;
            foreach (var file in Directory.EnumerateFiles(dir, "*.cs", SearchOption.AllDirectories))
            {
                var relative = Path.GetRelativePath(root, file).Replace('\\', '/');
                if (relative.Split('/').Any(p => p is "bin" or "obj")) continue;
                var n = 0;
                foreach (var line in File.ReadLines(file))
                {
                    n++;
                    var code = CodeOf(line);
                    if (SubjectLiteral().IsMatch(code) || ReplyParsing().IsMatch(code))
                        yield return (relative, n, line.Trim());
                }
            }
        }
    }

    /// <summary>The line without a trailing <c>//</c> comment (one outside a string literal).</summary>
    public static string CodeOf(string line)
    {
        var inString = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (inString)
            {
                if (c == '\\') i++;
                else if (c == '"') inString = false;
            }
            else if (c == '"') inString = true;
            else if (c == '\'' && i + 2 < line.Length) i += line[i + 1] == '\\' ? 3 : 2;
            else if (c == '/' && i + 1 < line.Length && line[i + 1] == '/') return line[..i];
        }
        return line;
    }

    [Fact]
    public void No_subject_literal_or_reply_parsing_outside_the_messaging_library()
    {
        var offences = Offences(Paths.RepoRoot).Select(o => $"{o.File}:{o.Line}: {o.Text}").ToList();
        Assert.True(offences.Count == 0,
            "NATS subjects belong in QwenNats.Messaging (Subjects, Rollouts, Judging); found:\n" + string.Join('\n', offences));
    }

    [Theory]
    [InlineData("""    public const string ItemKey = "qwen.caller";""")]
    [InlineData("""        await nats.PublishAsync($"qwen.ctl.{verb}", payload);""")]
    [InlineData("""        var s = @"qwen.events.>";""")]
    [InlineData("""        var id = msg.Subject[(msg.Subject.LastIndexOf('.') + 1)..];""")]
    [InlineData("""        var parts = msg.Subject.Split('.');""")]
    [InlineData("""        var at = replySubject?.IndexOf(".");""")]
    public void The_scan_catches(string line)
    {
        var code = CodeOf(line);
        Assert.True(SubjectLiteral().IsMatch(code) || ReplyParsing().IsMatch(code), line);
    }

    [Theory]
    [InlineData("""        // (new WebSocket(url, ["qwen", "qwen.key.<key>"])) keeps it out of URLs.""")]
    [InlineData("""        await nats.PublishAsync(Subjects.Infer(colour), request); // not "qwen.blue.infer" """)]
    [InlineData("""        var dot = category.LastIndexOf('.');""")]
    [InlineData("""        var name = "qwen-test-policy.json";""")]
    public void The_scan_passes(string line)
    {
        var code = CodeOf(line);
        Assert.False(SubjectLiteral().IsMatch(code) || ReplyParsing().IsMatch(code), line);
    }
}

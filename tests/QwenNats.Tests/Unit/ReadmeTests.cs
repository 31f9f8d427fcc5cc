using System.Text.RegularExpressions;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Unit;

/// <summary>
/// README.md against the code, both ways: the <c>X-Qwen-*</c> headers it names are the ones the
/// services use, its settings table for <c>up.sh</c> is the settings list of <c>up.sh</c>, and its
/// first-ten-minutes commands can be extracted for <c>.ci/readme-check.sh</c>.
/// </summary>
public sealed partial class ReadmeTests
{
    private static string Readme => File.ReadAllText(Path.Combine(Paths.RepoRoot, "README.md")).ReplaceLineEndings("\n");

    private static string UpSh => File.ReadAllText(Path.Combine(Paths.RepoRoot, "deploy", "local", "up.sh")).ReplaceLineEndings("\n");

    /// <summary>Every X-Qwen-* header in the services' sources (C#, the console's scripts and pages).</summary>
    private static SortedSet<string> HeadersInCode()
    {
        var services = Path.Combine(Paths.RepoRoot, "services");
        var sep = Path.DirectorySeparatorChar;
        var files = Directory.EnumerateFiles(services, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".cs", StringComparison.Ordinal) || f.EndsWith(".js", StringComparison.Ordinal) || f.EndsWith(".html", StringComparison.Ordinal))
            .Where(f => !f.Contains($"{sep}bin{sep}", StringComparison.Ordinal) && !f.Contains($"{sep}obj{sep}", StringComparison.Ordinal));
        return new SortedSet<string>(files.SelectMany(f => QwenHeader().Matches(File.ReadAllText(f)).Select(m => m.Value)), StringComparer.Ordinal);
    }

    [Fact]
    public void Every_X_Qwen_header_in_the_readme_is_in_the_code_and_every_one_in_the_code_is_in_the_readme()
    {
        var inReadme = new SortedSet<string>(QwenHeader().Matches(Readme).Select(m => m.Value), StringComparer.Ordinal);
        var inCode = HeadersInCode();
        Assert.NotEmpty(inCode);
        Assert.Contains("X-Qwen-Colour", inCode);
        var onlyReadme = inReadme.Except(inCode).ToList();
        var onlyCode = inCode.Except(inReadme).ToList();
        Assert.True(onlyReadme.Count == 0, $"README.md names headers no service uses: {string.Join(", ", onlyReadme)}");
        Assert.True(onlyCode.Count == 0, $"services use headers README.md does not name: {string.Join(", ", onlyCode)}");
    }

    [Fact]
    public void The_readme_lists_only_route_reasons_that_are_sent()
    {
        // X-Qwen-Route carries the router's reason; a request with an explicit colour gets none.
        var sentence = RouteSentence().Match(Readme);
        Assert.True(sentence.Success, "README.md should say which values X-Qwen-Route takes");
        var listed = Regex.Matches(sentence.Groups[1].Value, "`([A-Za-z]+)`").Select(m => m.Groups[1].Value).ToHashSet();
        var sent = Enum.GetNames<QwenNats.Ingress.Routing.RouteReason>().Where(n => n != nameof(QwenNats.Ingress.Routing.RouteReason.Explicit)).ToHashSet();
        Assert.Equal(sent.Order(), listed.Order());
    }

    /// <summary>QWEN_* names of up.sh's "Settings (environment):" comment block.</summary>
    private static SortedSet<string> UpShSettingsList()
    {
        var lines = UpSh.Split('\n');
        var start = Array.FindIndex(lines, l => l.StartsWith("# Settings (environment):", StringComparison.Ordinal));
        Assert.True(start >= 0, "up.sh has no '# Settings (environment):' block");
        var block = lines.Skip(start + 1).TakeWhile(l => l.StartsWith('#'));
        return new SortedSet<string>(block.Select(l => SettingAtStart().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value), StringComparer.Ordinal);
    }

    /// <summary>QWEN_* names in the first column of README.md's table after "Settings for `up.sh`".</summary>
    private static SortedSet<string> ReadmeSettingsTable()
    {
        var lines = Readme.Split('\n');
        var start = Array.FindIndex(lines, l => l.StartsWith("Settings for `up.sh`", StringComparison.Ordinal));
        Assert.True(start >= 0, "README.md has no 'Settings for `up.sh`' table");
        var rows = lines.Skip(start + 1).SkipWhile(l => !l.StartsWith('|')).TakeWhile(l => l.StartsWith('|'));
        return new SortedSet<string>(rows.Select(r => SettingInFirstColumn().Match(r)).Where(m => m.Success).Select(m => m.Groups[1].Value), StringComparer.Ordinal);
    }

    [Fact]
    public void The_readme_settings_table_and_the_settings_list_of_up_sh_name_the_same_settings()
    {
        var script = UpShSettingsList();
        var readme = ReadmeSettingsTable();
        Assert.Contains("QWEN_PORT", script);
        Assert.True(script.SetEquals(readme),
            $"only in up.sh: {string.Join(", ", script.Except(readme))}; only in README.md: {string.Join(", ", readme.Except(script))}");
    }

    [Fact]
    public void Every_QWEN_variable_up_sh_reads_is_in_its_settings_list()
    {
        var read = new SortedSet<string>(ReadVariable().Matches(UpSh).Select(m => m.Groups[1].Value), StringComparer.Ordinal);
        Assert.NotEmpty(read);
        var undocumented = read.Except(UpShSettingsList()).ToList();
        Assert.True(undocumented.Count == 0, $"up.sh reads settings its list does not name: {string.Join(", ", undocumented)}");
    }

    [Fact]
    public void The_first_ten_minutes_start_the_system_call_it_roll_green_out_and_back_and_stop()
    {
        var lines = Readme.Split('\n');
        var commands = new List<string>();
        var inBlock = false;
        foreach (var line in lines)
        {
            if (line.TrimEnd() == "```bash first-ten-minutes") { inBlock = true; continue; }
            if (inBlock && line.StartsWith("```", StringComparison.Ordinal)) { inBlock = false; continue; }
            if (inBlock && line.Trim().Length > 0 && !line.TrimStart().StartsWith('#')) commands.Add(line);
        }
        Assert.False(inBlock, "a first-ten-minutes block is not closed");
        Assert.StartsWith("deploy/local/up.sh", commands[0]);
        Assert.StartsWith("deploy/local/down.sh", commands[^1]);
        Assert.Contains(commands, c => c.Contains("/v1/sentiment", StringComparison.Ordinal));
        Assert.Contains(commands, c => c.Contains("/v1/chat/completions", StringComparison.Ordinal));
        Assert.Contains(commands, c => c.StartsWith("deploy/local/qwenctl --help", StringComparison.Ordinal));
        Assert.Contains(commands, c => c.StartsWith("deploy/local/qwenctl start", StringComparison.Ordinal));
        Assert.Contains(commands, c => c.StartsWith("deploy/local/qwenctl rollback", StringComparison.Ordinal));
        // The section comes first, right after the introduction.
        var firstSection = lines.First(l => l.StartsWith("## ", StringComparison.Ordinal));
        Assert.Equal("## First ten minutes", firstSection);
    }

    [Fact]
    public void The_operator_tool_knows_exactly_the_promoters_verbs()
    {
        // qwenctl's help (and its verb check) come from this table: every verb the promoter serves has an entry,
        // with a summary, its fields and at least one example that starts with the verb.
        Assert.Equal(Rollouts.Verbs.All.Order(), QwenNats.Messaging.Control.VerbHelp.Verbs.Keys.Order());
        Assert.All(QwenNats.Messaging.Control.VerbHelp.Verbs, v =>
        {
            Assert.False(string.IsNullOrWhiteSpace(v.Value.Summary));
            Assert.NotEmpty(v.Value.Examples);
            Assert.All(v.Value.Examples, e => Assert.StartsWith(v.Key, e, StringComparison.Ordinal));
        });
        // And the README's operator section shows every verb as a `nats req` line.
        var readme = File.ReadAllText(Path.Combine(Paths.RepoRoot, "README.md"));
        Assert.All(Rollouts.Verbs.All, verb => Assert.Contains($"nats req qwen.ctl.{verb} ", readme, StringComparison.Ordinal));
    }

    [Fact]
    public void The_readme_chat_field_table_gives_every_field_the_parser_knows_its_status() =>
        FieldTableMatches("### Chat completions fields", QwenNats.Ingress.OpenAi.RequestParser.ChatFields);

    [Fact]
    public void The_readme_completions_field_table_gives_every_field_the_parser_knows_its_status() =>
        FieldTableMatches("### Completions fields", QwenNats.Ingress.OpenAi.RequestParser.CompletionFields);

    [Fact]
    public void The_readme_message_field_table_gives_every_field_the_parser_knows_its_status() =>
        FieldTableMatches("### Message fields", QwenNats.Ingress.OpenAi.RequestParser.MessageFields);

    private static void FieldTableMatches(string heading, IReadOnlyDictionary<string, QwenNats.Ingress.OpenAi.RequestParser.FieldStatus> known)
    {
        var lines = Readme.Split('\n');
        var start = Array.FindIndex(lines, l => l == heading);
        Assert.True(start >= 0, $"README.md has no '{heading}' table");
        var rows = lines.Skip(start + 1).SkipWhile(l => !l.StartsWith('|')).TakeWhile(l => l.StartsWith('|')).Skip(2)
            .Select(r => r.Split('|', StringSplitOptions.TrimEntries)).ToList();
        var inReadme = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var cells in rows)
            foreach (var field in Regex.Matches(cells[1], "`([a-z_]+)`").Select(m => m.Groups[1].Value))
                inReadme[field] = cells[2];
        Assert.Equal(known.Keys.Order(), inReadme.Keys.Order());
        foreach (var (field, status) in known)
        {
            var expected = status switch
            {
                QwenNats.Ingress.OpenAi.RequestParser.FieldStatus.Supported => "supported",
                QwenNats.Ingress.OpenAi.RequestParser.FieldStatus.Ignored => "accepted and ignored",
                _ => "refused",
            };
            Assert.True(inReadme[field].StartsWith(expected, StringComparison.Ordinal), $"README.md says '{field}' is '{inReadme[field]}', the parser: {expected}");
        }
    }

    [GeneratedRegex(@"X-Qwen-[A-Za-z]+(?:-[A-Za-z]+)*")]
    private static partial Regex QwenHeader();

    [GeneratedRegex(@"`X-Qwen-Route` header says why a request went where it did \(([^)]*)\)")]
    private static partial Regex RouteSentence();

    [GeneratedRegex(@"^#\s+(QWEN_[A-Z0-9_]+)\s")]
    private static partial Regex SettingAtStart();

    [GeneratedRegex(@"^\|\s*`(QWEN_[A-Z0-9_]+)`\s*\|")]
    private static partial Regex SettingInFirstColumn();

    // The passwords up.sh generates into .run/nats-users.env (QWEN_NATS_<USER>_PASSWORD) are not settings.
    [GeneratedRegex(@"\$\{?(QWEN_(?!NATS_[A-Z_]+_PASSWORD\b)[A-Z0-9_]+)")]
    private static partial Regex ReadVariable();
}

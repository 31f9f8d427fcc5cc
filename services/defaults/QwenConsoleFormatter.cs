using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace QwenNats.ServiceDefaults;

public sealed class QwenConsoleFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>The line prefix, e.g. <c>[worker][BLUE]</c>; set by <see cref="ServiceDefaultsExtensions.AddQwenDefaults"/>.</summary>
    public string Prefix { get; set; } = "";
}

/// <summary>
/// One line per event: time, level, the service/colour prefix, category, message and the
/// scope values (request id, session id) so one request can be followed across processes.
/// </summary>
public sealed class QwenConsoleFormatter : ConsoleFormatter
{
    public const string FormatterName = "qwen";
    private readonly IOptionsMonitor<QwenConsoleFormatterOptions> _options;

    public QwenConsoleFormatter(IOptionsMonitor<QwenConsoleFormatterOptions> options) : base(FormatterName) => _options = options;

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (string.IsNullOrEmpty(message) && logEntry.Exception is null)
            return;
        var o = _options.CurrentValue;
        textWriter.Write(DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture));
        textWriter.Write(' ');
        textWriter.Write(Level(logEntry.LogLevel));
        textWriter.Write(' ');
        textWriter.Write(o.Prefix);
        textWriter.Write(' ');
        textWriter.Write(ShortCategory(logEntry.Category));
        textWriter.Write(": ");
        textWriter.Write(message.ReplaceLineEndings(" "));
        scopeProvider?.ForEachScope(static (scope, writer) =>
        {
            if (scope is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (var (key, value) in pairs)
                {
                    if (key == "{OriginalFormat}") continue;
                    writer.Write(' ');
                    writer.Write(key);
                    writer.Write('=');
                    writer.Write(value);
                }
            }
        }, textWriter);
        if (logEntry.Exception is not null)
        {
            textWriter.Write(" | ");
            textWriter.Write(logEntry.Exception.ToString().ReplaceLineEndings(" | "));
        }
        textWriter.WriteLine();
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };

    private static string ShortCategory(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot >= 0 ? category[(dot + 1)..] : category;
    }
}


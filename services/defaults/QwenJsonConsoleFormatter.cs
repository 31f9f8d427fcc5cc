using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace QwenNats.ServiceDefaults;

public sealed class QwenJsonConsoleFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>The service (<c>ingress</c>, <c>worker</c>, <c>judge</c>, <c>promoter</c>).</summary>
    public string Service { get; set; } = "";

    /// <summary>The colour of a worker; null for services without one.</summary>
    public string? Colour { get; set; }

    /// <summary>This process's id on the bus (a worker's id, an ingress's instance id).</summary>
    public string Instance { get; set; } = "";

    /// <summary>The machine's name.</summary>
    public string Host { get; set; } = Environment.MachineName;
}

/// <summary>
/// <c>Logging:Format=json</c>: one JSON object per line with the fields a log store filters on — <c>time</c>,
/// <c>level</c>, <c>service</c>, <c>colour</c> (workers only), <c>instance</c>, <c>host</c>, <c>category</c>,
/// <c>event_id</c>, <c>message</c> — then the scope values (<c>request_id</c>, <c>session_id</c>, ...) as fields of
/// their own, the message's template arguments under <c>state</c>, and <c>exception</c> when there is one.
/// Characters are escaped only as JSON needs (a log line is never embedded in HTML), so the lines stay readable.
/// </summary>
public sealed class QwenJsonConsoleFormatter : ConsoleFormatter
{
    public const string FormatterName = "qwen-json";

    /// <summary>Field names the formatter writes itself; a scope value with one of these names is left out.</summary>
    private static readonly HashSet<string> Reserved =
        ["time", "level", "service", "colour", "instance", "host", "category", "event_id", "event", "message", "state", "exception"];

    private readonly IOptionsMonitor<QwenJsonConsoleFormatterOptions> _options;

    public QwenJsonConsoleFormatter(IOptionsMonitor<QwenJsonConsoleFormatterOptions> options) : base(FormatterName) => _options = options;

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (string.IsNullOrEmpty(message) && logEntry.Exception is null)
            return;
        var o = _options.CurrentValue;
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("time", DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
            json.WriteString("level", Level(logEntry.LogLevel));
            json.WriteString("service", o.Service);
            if (o.Colour is not null)
                json.WriteString("colour", o.Colour);
            json.WriteString("instance", o.Instance);
            json.WriteString("host", o.Host);
            json.WriteString("category", logEntry.Category);
            json.WriteNumber("event_id", logEntry.EventId.Id);
            if (!string.IsNullOrEmpty(logEntry.EventId.Name))
                json.WriteString("event", logEntry.EventId.Name);
            json.WriteString("message", message);
            var written = new HashSet<string>(Reserved);
            scopeProvider?.ForEachScope((scope, state) =>
            {
                if (scope is not IEnumerable<KeyValuePair<string, object?>> pairs)
                    return;
                foreach (var (key, value) in pairs)
                {
                    if (key == "{OriginalFormat}" || !state.Written.Add(key))
                        continue;
                    WriteValue(state.Json, key, value);
                }
            }, (Json: json, Written: written));
            if (logEntry.State is IReadOnlyList<KeyValuePair<string, object?>> args && args.Any(a => a.Key != "{OriginalFormat}"))
            {
                json.WriteStartObject("state");
                foreach (var (key, value) in args)
                {
                    if (key != "{OriginalFormat}")
                        WriteValue(json, key, value);
                }
                json.WriteEndObject();
            }
            if (logEntry.Exception is not null)
                json.WriteString("exception", logEntry.Exception.ToString());
            json.WriteEndObject();
        }
        textWriter.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    private static void WriteValue(Utf8JsonWriter json, string key, object? value)
    {
        switch (value)
        {
            case null: json.WriteNull(key); break;
            case bool b: json.WriteBoolean(key, b); break;
            case ulong u: json.WriteNumber(key, u); break;
            case int or long or short or byte or uint or ushort or sbyte:
                json.WriteNumber(key, Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
            case double d when double.IsFinite(d): json.WriteNumber(key, d); break;
            case float f when float.IsFinite(f): json.WriteNumber(key, f); break;
            case decimal m: json.WriteNumber(key, m); break;
            case TimeSpan t: json.WriteString(key, t.ToString("c", CultureInfo.InvariantCulture)); break;
            case DateTimeOffset t: json.WriteString(key, t); break;
            case DateTime t: json.WriteString(key, t); break;
            default: json.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
        }
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "information",
        LogLevel.Warning => "warning",
        LogLevel.Error => "error",
        LogLevel.Critical => "critical",
        _ => "none",
    };
}

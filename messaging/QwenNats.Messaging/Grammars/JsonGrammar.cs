using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace QwenNats.Messaging.Grammars;

/// <summary>
/// Why a JSON Schema cannot be turned into a grammar: the schema path of the keyword, a sentence, and whether
/// the keyword is valid JSON Schema this converter does not support (rather than a malformed or too large schema).
/// </summary>
public sealed record SchemaProblem(string Param, string Message, bool Unsupported = false);

/// <summary>
/// Turns OpenAI's <c>response_format</c> into a GBNF grammar (llama.cpp's grammar format) that constrains
/// decoding, so the answer is always JSON of the requested shape. Compact JSON only (no whitespace outside
/// strings); strings, arrays, numbers and nesting are bounded (see the constants) so that even a tiny or
/// rambling model can finish the JSON within a few hundred tokens. Every schema keyword either shapes the
/// grammar, is an annotation that cannot change which answers are valid, or is refused with its path:
/// nothing that constrains the answer is ignored. The ingress checks a schema with this class (a 400 names
/// the keyword) and the worker builds the grammar with it, so only grammars built here reach llama.cpp.
/// </summary>
public static class JsonGrammar
{
    /// <summary>Most characters in a string without <c>maxLength</c>.</summary>
    public const int DefaultMaxStringLength = 64;
    /// <summary>Most characters in any string; a larger <c>maxLength</c> is held to this (answers still satisfy it).</summary>
    public const int MaxStringLength = 512;
    /// <summary>Most items in an array without <c>maxItems</c>.</summary>
    public const int DefaultMaxItems = 16;
    /// <summary>Most items in any array; a larger <c>maxItems</c> is held to this.</summary>
    public const int MaxItems = 256;
    /// <summary>Most members of an object in JSON mode or of a schema object without <c>properties</c>.</summary>
    public const int DefaultMaxMembers = 8;
    /// <summary>Most characters in a member name in JSON mode or of a schema object without <c>properties</c>.</summary>
    public const int MaxKeyLength = 32;
    /// <summary>Most items of an array in JSON mode or of a schema array without <c>items</c>.</summary>
    public const int FreeFormMaxItems = 8;
    /// <summary>Most digits before and after the decimal point of a number.</summary>
    public const int MaxDigits = 15;
    /// <summary>Deepest nesting of objects and arrays in JSON mode (and of a schema's free-form values).</summary>
    public const int FreeFormDepth = 3;
    /// <summary>Deepest nesting of a schema (objects, arrays, type alternatives).</summary>
    public const int MaxSchemaDepth = 16;
    /// <summary>Most schemas (properties, items, alternatives) in one schema.</summary>
    public const int MaxSchemaNodes = 256;
    /// <summary>Most values in one <c>enum</c>.</summary>
    public const int MaxEnumValues = 256;
    /// <summary>Longest grammar, in characters.</summary>
    public const int MaxGrammarChars = 65_536;

    /// <summary>The root rule of every grammar built here.</summary>
    public const string Root = "root";

    /// <summary>Keywords that describe a schema without constraining its values: accepted, no effect on the grammar.</summary>
    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
    };

    private static readonly HashSet<string> Types = new(StringComparer.Ordinal) { "object", "array", "string", "number", "integer", "boolean", "null" };

    /// <summary>Which keywords each type honours (besides <c>type</c>, <c>enum</c>, <c>const</c> and annotations).</summary>
    private static readonly Dictionary<string, string[]> Honoured = new(StringComparer.Ordinal)
    {
        ["object"] = ["properties", "required", "additionalProperties"],
        ["array"] = ["items", "minItems", "maxItems"],
        ["string"] = ["minLength", "maxLength"],
        ["number"] = [],
        ["integer"] = [],
        ["boolean"] = [],
        ["null"] = [],
    };

    /// <summary>JSON mode: any JSON object (compact, bounded as the constants say).</summary>
    public static string ForJsonObject()
    {
        var b = new Builder();
        b.Add(Root, b.FreeObject(0));
        return b.ToString();
    }

    /// <summary>
    /// The grammar for values valid against <paramref name="schema"/>, or the first problem found.
    /// <paramref name="param"/> is the schema's own path in the request (e.g. <c>response_format.json_schema.schema</c>).
    /// </summary>
    public static bool TryFromSchema(JsonElement schema, string param, out string grammar, out SchemaProblem? problem)
    {
        grammar = "";
        var b = new Builder();
        problem = b.Schema(schema, param, 0, out var body);
        if (problem is not null)
            return false;
        b.Add(Root, body!);
        var text = b.ToString();
        if (text.Length > MaxGrammarChars)
        {
            problem = new SchemaProblem(param, $"The schema is too large: its grammar would be {text.Length} characters; the limit is {MaxGrammarChars}. Use fewer properties or enum values.");
            return false;
        }
        grammar = text;
        return true;
    }

    /// <summary>Builds the grammar for a <c>response_format</c> already checked by the ingress (from its wire form).</summary>
    public static bool TryFromResponseFormat(ResponseFormat format, out string grammar, out SchemaProblem? problem)
    {
        grammar = "";
        problem = null;
        switch (format.Type)
        {
            case ResponseFormat.JsonObject:
                grammar = ForJsonObject();
                return true;
            case ResponseFormat.JsonSchema when format.Schema is { } schemaText:
                JsonDocument doc;
                try
                {
                    doc = JsonDocument.Parse(schemaText, new JsonDocumentOptions { MaxDepth = MaxSchemaDepth * 2 + 8 });
                }
                catch (JsonException e)
                {
                    problem = new SchemaProblem("response_format.json_schema.schema", $"The schema is not valid JSON: {e.Message}");
                    return false;
                }
                using (doc)
                    return TryFromSchema(doc.RootElement, "response_format.json_schema.schema", out grammar, out problem);
            case ResponseFormat.JsonSchema:
                problem = new SchemaProblem("response_format.json_schema.schema", "A json_schema response format needs a schema.");
                return false;
            default:
                problem = new SchemaProblem("response_format.type", $"Unknown response format '{format.Type}'.");
                return false;
        }
    }

    /// <summary>Collects rules; names are <c>root</c> and <c>r1</c>, <c>r2</c>…; shared rules are made once.</summary>
    private sealed class Builder
    {
        private readonly List<(string Name, string Body)> _rules = [];
        private readonly Dictionary<string, string> _shared = new(StringComparer.Ordinal);
        private int _next;
        private int _nodes;

        public void Add(string name, string body) => _rules.Add((name, body));

        private string NewRule(string body)
        {
            var name = $"r{++_next}";
            _rules.Add((name, body));
            return name;
        }

        /// <summary>A rule made once per distinct body (e.g. strings of one length bound).</summary>
        private string Shared(string body)
        {
            if (!_shared.TryGetValue(body, out var name))
                _shared[body] = name = NewRule(body);
            return name;
        }

        public override string ToString()
        {
            var sb = new StringBuilder();
            foreach (var (name, body) in _rules.Where(r => r.Name == Root).Concat(_rules.Where(r => r.Name != Root)))
                sb.Append(name).Append(" ::= ").Append(body).Append('\n');
            return sb.ToString();
        }

        private string Char() => Shared("[^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\/bfnrt]");

        public string String(int min, int max) => Shared($"\"\\\"\" {Char()}{Repeat(min, max)} \"\\\"\"");

        public string Integer() => Shared($"\"-\"? (\"0\" | [1-9] [0-9]{{0,{MaxDigits - 1}}})");

        public string Number() => Shared($"{Integer()} (\".\" [0-9]{{1,{MaxDigits}}})?");

        private static string Repeat(int min, int max) => min == max ? $"{{{min}}}" : $"{{{min},{max}}}";

        /// <summary><c>"[" item ("," item){…} "]"</c> for min..max items.</summary>
        private static string Array(string item, int min, int max)
        {
            if (max == 0)
                return "\"[\" \"]\"";
            var rest = max == 1 ? "" : $" (\",\" {item}){Repeat(Math.Max(min - 1, 0), max - 1)}";
            return min == 0 ? $"\"[\" ({item}{rest})? \"]\"" : $"\"[\" {item}{rest} \"]\"";
        }

        /// <summary>A JSON value of any type, containers nested at most <see cref="FreeFormDepth"/> deep from here.</summary>
        public string FreeValue(int depth)
        {
            var scalars = $"{String(0, DefaultMaxStringLength)} | {Number()} | \"true\" | \"false\" | \"null\"";
            if (depth >= FreeFormDepth)
                return Shared(scalars);
            return Shared($"{FreeObjectRule(depth)} | {Shared(Array(FreeValue(depth + 1), 0, FreeFormMaxItems))} | {scalars}");
        }

        private string FreeObjectRule(int depth) => Shared(FreeObject(depth));

        public string FreeObject(int depth)
        {
            var member = Shared($"{String(1, MaxKeyLength)} \":\" {FreeValue(depth + 1)}");
            return $"\"{{\" ({member} (\",\" {member}){{0,{DefaultMaxMembers - 1}}})? \"}}\"";
        }

        /// <summary>The grammar expression for values valid against one schema, or the problem with it.</summary>
        public SchemaProblem? Schema(JsonElement s, string path, int depth, out string? body)
        {
            body = null;
            if (++_nodes > MaxSchemaNodes)
                return new SchemaProblem(path, $"The schema is too large: it has more than {MaxSchemaNodes} schemas (properties, items, alternatives).");
            if (depth > MaxSchemaDepth)
                return new SchemaProblem(path, $"The schema nests deeper than {MaxSchemaDepth} levels.");
            if (s.ValueKind == JsonValueKind.True)
            {
                body = FreeValue(0);
                return null;
            }
            if (s.ValueKind != JsonValueKind.Object)
                return new SchemaProblem(path, "A schema must be an object.");

            // Which types are allowed, and whether every keyword is one this converter honours for one of them.
            string[] types;
            if (s.TryGetProperty("type", out var typeEl))
            {
                var list = typeEl.ValueKind == JsonValueKind.Array ? typeEl.EnumerateArray().ToArray() : [typeEl];
                if (list.Length == 0 || list.Any(t => t.ValueKind != JsonValueKind.String || !Types.Contains(t.GetString()!)))
                    return new SchemaProblem($"{path}.type", "'type' must be one of object, array, string, number, integer, boolean, null, or an array of them.");
                types = list.Select(t => t.GetString()!).Distinct(StringComparer.Ordinal).ToArray();
            }
            else
            {
                types = [];
            }
            foreach (var keyword in s.EnumerateObject())
            {
                var name = keyword.Name;
                if (name is "type" or "enum" or "const" || Annotations.Contains(name))
                    continue;
                var honouredBy = Honoured.Where(h => h.Value.Contains(name, StringComparer.Ordinal)).Select(h => h.Key).ToArray();
                if (honouredBy.Length == 0)
                    return new SchemaProblem($"{path}.{name}",
                        $"The schema keyword '{name}' is not supported. Supported: type, properties, required, additionalProperties (false), items, minItems, maxItems, minLength, maxLength, enum, const; remove '{name}'.", Unsupported: true);
                if (types.Length == 0)
                    return new SchemaProblem($"{path}.{name}", $"'{name}' needs a 'type' ({string.Join(" or ", honouredBy)}) beside it.");
            }

            if (s.TryGetProperty("const", out var constEl))
            {
                body = Literal(constEl);
                return null;
            }
            if (s.TryGetProperty("enum", out var enumEl))
            {
                if (enumEl.ValueKind != JsonValueKind.Array || enumEl.GetArrayLength() == 0)
                    return new SchemaProblem($"{path}.enum", "'enum' must be a non-empty array.");
                if (enumEl.GetArrayLength() > MaxEnumValues)
                    return new SchemaProblem($"{path}.enum", $"'enum' has {enumEl.GetArrayLength()} values; the limit is {MaxEnumValues}.");
                // Only the values of an allowed type can be answered.
                var values = enumEl.EnumerateArray().Where(v => types.Length == 0 || types.Any(t => IsOfType(v, t))).Select(Literal).Distinct(StringComparer.Ordinal).ToArray();
                if (values.Length == 0)
                    return new SchemaProblem($"{path}.enum", "No value of 'enum' has the schema's 'type'.");
                body = string.Join(" | ", values);
                return null;
            }
            if (types.Length == 0)
            {
                body = FreeValue(0);
                return null;
            }

            var alternatives = new List<string>();
            foreach (var type in types)
            {
                var problem = Typed(s, type, path, depth, out var alternative);
                if (problem is not null)
                    return problem;
                alternatives.Add(alternative!);
            }
            body = alternatives.Count == 1 ? alternatives[0] : string.Join(" | ", alternatives.Select(a => $"({a})"));
            return null;
        }

        private SchemaProblem? Typed(JsonElement s, string type, string path, int depth, out string? body)
        {
            body = null;
            switch (type)
            {
                case "null":
                    body = "\"null\"";
                    return null;
                case "boolean":
                    body = "\"true\" | \"false\"";
                    return null;
                case "integer":
                    body = Integer();
                    return null;
                case "number":
                    body = Number();
                    return null;
                case "string":
                {
                    if (TryCount(s, "minLength", path, 0, out var min) is { } p1) return p1;
                    if (TryCount(s, "maxLength", path, DefaultMaxStringLength, out var max) is { } p2) return p2;
                    if (min > MaxStringLength)
                        return new SchemaProblem($"{path}.minLength", $"'minLength' is {min}; the limit is {MaxStringLength} characters.");
                    max = Math.Min(max, MaxStringLength);
                    if (min > max)
                        return new SchemaProblem($"{path}.minLength", $"'minLength' ({min}) is greater than 'maxLength' ({max}).");
                    body = String(min, max);
                    return null;
                }
                case "array":
                {
                    if (TryCount(s, "minItems", path, 0, out var min) is { } p1) return p1;
                    if (TryCount(s, "maxItems", path, DefaultMaxItems, out var max) is { } p2) return p2;
                    if (min > MaxItems)
                        return new SchemaProblem($"{path}.minItems", $"'minItems' is {min}; the limit is {MaxItems}.");
                    max = Math.Min(max, MaxItems);
                    if (min > max)
                        return new SchemaProblem($"{path}.minItems", $"'minItems' ({min}) is greater than 'maxItems' ({max}).");
                    string item;
                    if (s.TryGetProperty("items", out var itemsEl))
                    {
                        if (itemsEl.ValueKind == JsonValueKind.Array)
                            return new SchemaProblem($"{path}.items", "'items' must be one schema (tuple 'items' arrays are not supported).", Unsupported: true);
                        if (Schema(itemsEl, $"{path}.items", depth + 1, out var itemBody) is { } p3) return p3;
                        item = NewRule(itemBody!);
                    }
                    else
                    {
                        item = FreeValue(1);
                    }
                    body = Array(item, min, max);
                    return null;
                }
                default:
                    return Object(s, path, depth, out body);
            }
        }

        private SchemaProblem? Object(JsonElement s, string path, int depth, out string? body)
        {
            body = null;
            var closed = false;
            if (s.TryGetProperty("additionalProperties", out var additional))
            {
                if (additional.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    return new SchemaProblem($"{path}.additionalProperties", "'additionalProperties' must be true or false (schemas for extra properties are not supported).", Unsupported: true);
                closed = additional.ValueKind == JsonValueKind.False;
            }
            var required = new HashSet<string>(StringComparer.Ordinal);
            if (s.TryGetProperty("required", out var requiredEl))
            {
                if (requiredEl.ValueKind != JsonValueKind.Array || requiredEl.EnumerateArray().Any(r => r.ValueKind != JsonValueKind.String))
                    return new SchemaProblem($"{path}.required", "'required' must be an array of property names.");
                required.UnionWith(requiredEl.EnumerateArray().Select(r => r.GetString()!));
            }
            if (!s.TryGetProperty("properties", out var propsEl))
            {
                if (required.Count > 0)
                    return new SchemaProblem($"{path}.required", "'required' names properties, but the schema has no 'properties' to describe them.");
                // No properties: only {} when closed; otherwise any object (extra properties are allowed).
                body = closed ? "\"{\" \"}\"" : FreeObjectRule(1);
                return null;
            }
            if (propsEl.ValueKind != JsonValueKind.Object)
                return new SchemaProblem($"{path}.properties", "'properties' must be an object of schemas.");
            var props = new List<(string Member, bool Required)>();
            foreach (var prop in propsEl.EnumerateObject())
            {
                var propPath = $"{path}.properties.{prop.Name}";
                if (Schema(prop.Value, propPath, depth + 1, out var valueBody) is { } p)
                    return p;
                props.Add(($"{Literal(prop.Name)} \":\" {NewRule(valueBody!)}", required.Contains(prop.Name)));
            }
            if (required.FirstOrDefault(r => props.Count == 0 || !propsEl.TryGetProperty(r, out _)) is { } missing)
                return new SchemaProblem($"{path}.required", $"'required' names '{missing}', which is not in 'properties'.");

            // Members in the schema's order; optional ones may be left out. first(i): the members from i on when
            // none has been written yet; rest(i): the same after one has (each starts with a comma).
            var n = props.Count;
            var rest = new string[n + 1];
            rest[n] = "";
            for (var i = n - 1; i >= 1; i--)
            {
                var (member, req) = props[i];
                var tail = rest[i + 1].Length == 0 ? "" : $" {rest[i + 1]}";
                var expr = req ? $"\",\" {member}{tail}" : $"(\",\" {member})?{tail}";
                rest[i] = NewRule(expr);
            }
            string first = "";
            for (var i = n - 1; i >= 0; i--)
            {
                var (member, req) = props[i];
                var withThis = rest[i + 1].Length == 0 ? member : $"{member} {rest[i + 1]}";
                first = req ? NewRule(withThis) : NewRule(first.Length == 0 ? $"({withThis})?" : $"{withThis} | {first}");
            }
            body = first.Length == 0 ? "\"{\" \"}\"" : $"\"{{\" {first} \"}}\"";
            return null;
        }

        private static SchemaProblem? TryCount(JsonElement s, string keyword, string path, int fallback, out int value)
        {
            value = fallback;
            if (!s.TryGetProperty(keyword, out var el))
                return null;
            if (el.ValueKind != JsonValueKind.Number || !el.TryGetInt64(out var v) || v < 0)
                return new SchemaProblem($"{path}.{keyword}", $"'{keyword}' must be a non-negative integer.");
            value = (int)Math.Min(v, int.MaxValue);
            return null;
        }
    }

    private static bool IsOfType(JsonElement v, string type) => type switch
    {
        "null" => v.ValueKind == JsonValueKind.Null,
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out var d) && d == decimal.Truncate(d),
        "number" => v.ValueKind == JsonValueKind.Number,
        "string" => v.ValueKind == JsonValueKind.String,
        "array" => v.ValueKind == JsonValueKind.Array,
        _ => v.ValueKind == JsonValueKind.Object,
    };

    private static readonly JsonWriterOptions Compact = new() { Indented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A GBNF literal matching exactly the compact JSON text of <paramref name="value"/>.</summary>
    private static string Literal(JsonElement value)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, Compact))
            value.WriteTo(writer);
        return Quote(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    /// <summary>A GBNF literal matching the JSON string <paramref name="s"/> (with its quotes).</summary>
    private static string Literal(string s)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, Compact))
            writer.WriteStringValue(s);
        return Quote(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    /// <summary>GBNF's double-quoted literal: quote, backslash and control characters escaped.</summary>
    private static string Quote(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (var c in text)
        {
            if (c == '"') sb.Append("\\\"");
            else if (c == '\\') sb.Append("\\\\");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}

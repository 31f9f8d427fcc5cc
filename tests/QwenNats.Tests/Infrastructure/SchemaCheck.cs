using System.Globalization;
using System.Text.Json;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// A JSON Schema checker for the subset the server's grammar converter supports (type and type arrays,
/// properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const):
/// the tests' independent judge of whether an answer is valid against its schema.
/// </summary>
public static class SchemaCheck
{
    /// <summary>Null when <paramref name="value"/> is valid, otherwise where and why it is not.</summary>
    public static string? Problem(JsonElement schema, JsonElement value, string path = "$")
    {
        if (schema.ValueKind == JsonValueKind.True)
            return null;
        if (schema.TryGetProperty("const", out var c))
            return JsonElement.DeepEquals(c, value) ? null : $"{path}: {value.GetRawText()} is not the const {c.GetRawText()}";
        if (schema.TryGetProperty("enum", out var e))
            return e.EnumerateArray().Any(v => JsonElement.DeepEquals(v, value)) ? null : $"{path}: {value.GetRawText()} is not in the enum";
        if (!schema.TryGetProperty("type", out var typeEl))
            return null;
        var types = typeEl.ValueKind == JsonValueKind.Array ? typeEl.EnumerateArray().Select(t => t.GetString()!).ToArray() : [typeEl.GetString()!];
        var problems = types.Select(t => Typed(schema, t, value, path)).ToList();
        return problems.Any(p => p is null) ? null : string.Join("; ", problems);
    }

    private static string? Typed(JsonElement schema, string type, JsonElement value, string path)
    {
        switch (type)
        {
            case "null":
                return value.ValueKind == JsonValueKind.Null ? null : $"{path}: not null";
            case "boolean":
                return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : $"{path}: not a boolean";
            case "number":
                return value.ValueKind == JsonValueKind.Number ? null : $"{path}: not a number";
            case "integer":
                return value.ValueKind == JsonValueKind.Number && decimal.TryParse(value.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d == decimal.Truncate(d)
                    ? null : $"{path}: not an integer";
            case "string":
            {
                if (value.ValueKind != JsonValueKind.String) return $"{path}: not a string";
                var length = value.GetString()!.EnumerateRunes().Count();
                if (schema.TryGetProperty("minLength", out var min) && length < min.GetInt32()) return $"{path}: shorter than minLength";
                if (schema.TryGetProperty("maxLength", out var max) && length > max.GetInt32()) return $"{path}: longer than maxLength";
                return null;
            }
            case "array":
            {
                if (value.ValueKind != JsonValueKind.Array) return $"{path}: not an array";
                var n = value.GetArrayLength();
                if (schema.TryGetProperty("minItems", out var min) && n < min.GetInt32()) return $"{path}: fewer than minItems";
                if (schema.TryGetProperty("maxItems", out var max) && n > max.GetInt32()) return $"{path}: more than maxItems";
                if (schema.TryGetProperty("items", out var items))
                {
                    var i = 0;
                    foreach (var item in value.EnumerateArray())
                        if (Problem(items, item, $"{path}[{i++}]") is { } p) return p;
                }
                return null;
            }
            default:
            {
                if (value.ValueKind != JsonValueKind.Object) return $"{path}: not an object";
                var props = schema.TryGetProperty("properties", out var p) ? p : default;
                if (schema.TryGetProperty("required", out var required))
                    foreach (var r in required.EnumerateArray())
                        if (!value.TryGetProperty(r.GetString()!, out _)) return $"{path}: required '{r.GetString()}' is missing";
                var closed = schema.TryGetProperty("additionalProperties", out var a) && a.ValueKind == JsonValueKind.False;
                foreach (var member in value.EnumerateObject())
                {
                    if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(member.Name, out var sub))
                    {
                        if (Problem(sub, member.Value, $"{path}.{member.Name}") is { } problem) return problem;
                    }
                    else if (closed)
                    {
                        return $"{path}: '{member.Name}' is not allowed";
                    }
                }
                return null;
            }
        }
    }
}

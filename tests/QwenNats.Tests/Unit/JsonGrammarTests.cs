using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Messaging.Grammars;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Unit;

/// <summary>The JSON Schema to GBNF converter: each supported keyword shapes the grammar, each other one is refused by its path.</summary>
public sealed class JsonGrammarTests
{
    private const string At = "response_format.json_schema.schema";

    private static Gbnf Grammar(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        Assert.True(JsonGrammar.TryFromSchema(doc.RootElement, At, out var gbnf, out var problem), problem?.Message);
        return Gbnf.Parse(gbnf);
    }

    private static SchemaProblem Refusal(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        Assert.False(JsonGrammar.TryFromSchema(doc.RootElement, At, out var gbnf, out var problem), gbnf);
        return problem!;
    }

    [Theory]
    [InlineData("""{"type":"string"}""", "\"hello world\"", true)]
    [InlineData("""{"type":"string"}""", "\"tab\\tquote\\\" ok\"", true)]
    [InlineData("""{"type":"string"}""", "\"snow ☃ and 雪\"", true)]
    [InlineData("""{"type":"string"}""", "hello", false)]
    [InlineData("""{"type":"string"}""", "\"raw\nnewline\"", false)]
    [InlineData("""{"type":"string"}""", "\"bad \\q escape\"", false)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"ab\"", true)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"abc\"", true)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"a\"", false)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"abcd\"", false)]
    [InlineData("""{"type":"string","enum":["red","green"]}""", "\"green\"", true)]
    [InlineData("""{"type":"string","enum":["red","green"]}""", "\"blue\"", false)]
    [InlineData("""{"type":"string","const":"only"}""", "\"only\"", true)]
    [InlineData("""{"type":"string","const":"only"}""", "\"other\"", false)]
    [InlineData("""{"type":"integer"}""", "-42", true)]
    [InlineData("""{"type":"integer"}""", "0", true)]
    [InlineData("""{"type":"integer"}""", "007", false)]
    [InlineData("""{"type":"integer"}""", "1.5", false)]
    [InlineData("""{"type":"number"}""", "1.5", true)]
    [InlineData("""{"type":"number"}""", "-0.25", true)]
    [InlineData("""{"type":"number"}""", "1.", false)]
    [InlineData("""{"type":"number"}""", "1e5", false)]
    [InlineData("""{"type":"boolean"}""", "true", true)]
    [InlineData("""{"type":"boolean"}""", "false", true)]
    [InlineData("""{"type":"boolean"}""", "yes", false)]
    [InlineData("""{"type":"null"}""", "null", true)]
    [InlineData("""{"type":"null"}""", "0", false)]
    [InlineData("""{"type":["string","null"]}""", "null", true)]
    [InlineData("""{"type":["string","null"]}""", "\"x\"", true)]
    [InlineData("""{"type":["string","null"]}""", "1", false)]
    [InlineData("""{"enum":[1,"two",null,{"a":[true]}]}""", "{\"a\":[true]}", true)]
    [InlineData("""{"enum":[1,"two",null,{"a":[true]}]}""", "\"two\"", true)]
    [InlineData("""{"enum":[1,"two",null,{"a":[true]}]}""", "2", false)]
    [InlineData("""{"const":{"k":"v"}}""", "{\"k\":\"v\"}", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"}}""", "[]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"}}""", "[1,2,3]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"}}""", "[1, 2]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"}}""", "[1,\"a\"]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2,3]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2,3,4]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"maxItems":0}""", "[]", true)]
    [InlineData("""{"type":"array"}""", "[1,\"a\",null,{\"b\":[]}]", true)]
    public void Each_supported_keyword_shapes_what_matches(string schema, string text, bool matches) =>
        Assert.Equal(matches, Grammar(schema).Matches(text));

    private const string Person = """
        {"type":"object","title":"a person","description":"who","properties":{
          "name":{"type":"string","description":"the name"},
          "age":{"type":"integer"},
          "nick":{"type":"string"},
          "home":{"type":"object","properties":{"town":{"type":"string"}},"required":["town"],"additionalProperties":false}
        },"required":["name","home"],"additionalProperties":false}
        """;

    [Theory]
    [InlineData("""{"name":"Ann","age":7,"nick":"A","home":{"town":"Rye"}}""", true)]
    [InlineData("""{"name":"Ann","home":{"town":"Rye"}}""", true)]
    [InlineData("""{"name":"Ann","nick":"A","home":{"town":"Rye"}}""", true)]
    [InlineData("""{"name":"Ann","age":7}""", false)]
    [InlineData("""{"home":{"town":"Rye"},"name":"Ann"}""", false)]
    [InlineData("""{"name":"Ann","home":{"town":"Rye"},"extra":1}""", false)]
    [InlineData("""{"name":"Ann","home":{"town":"Rye","zip":1}}""", false)]
    [InlineData("""{"name":"Ann","home":{}}""", false)]
    [InlineData("""{ "name":"Ann","home":{"town":"Rye"}}""", false)]
    public void Objects_take_their_properties_in_the_schema_order_required_ones_always_and_nothing_else(string text, bool matches) =>
        Assert.Equal(matches, Grammar(Person).Matches(text));

    [Theory]
    [InlineData("{}", true)]
    [InlineData("""{"a":1}""", true)]
    [InlineData("""{"b":2}""", true)]
    [InlineData("""{"a":1,"b":2}""", true)]
    [InlineData("""{"b":2,"a":1}""", false)]
    [InlineData("""{,"b":2}""", false)]
    [InlineData("""{"a":1,}""", false)]
    public void An_object_of_optional_properties_may_leave_out_any_of_them(string text, bool matches) =>
        Assert.Equal(matches, Grammar("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}""").Matches(text));

    [Fact]
    public void Strings_are_bounded_by_default_and_by_maxLength_up_to_the_limit()
    {
        var plain = Grammar("""{"type":"string"}""");
        Assert.True(plain.Matches($"\"{new string('a', JsonGrammar.DefaultMaxStringLength)}\""));
        Assert.False(plain.Matches($"\"{new string('a', JsonGrammar.DefaultMaxStringLength + 1)}\""));
        var huge = Grammar("""{"type":"string","maxLength":100000}""");
        Assert.True(huge.Matches($"\"{new string('a', JsonGrammar.MaxStringLength)}\""));
        Assert.False(huge.Matches($"\"{new string('a', JsonGrammar.MaxStringLength + 1)}\""));
    }

    [Fact]
    public void Arrays_are_bounded_by_default()
    {
        var g = Grammar("""{"type":"array","items":{"type":"integer"}}""");
        Assert.True(g.Matches($"[{string.Join(",", Enumerable.Repeat("1", JsonGrammar.DefaultMaxItems))}]"));
        Assert.False(g.Matches($"[{string.Join(",", Enumerable.Repeat("1", JsonGrammar.DefaultMaxItems + 1))}]"));
    }

    [Theory]
    [InlineData("{}", true)]
    [InlineData("""{"a":1,"b":"x","c":[1,{"d":null}],"e":{"f":true}}""", true)]
    [InlineData("""{"a":{"b":{"c":{}}}}""", false)]
    [InlineData("[]", false)]
    [InlineData("\"text\"", false)]
    [InlineData("""{"a": 1}""", false)]
    [InlineData("""{"":1}""", false)]
    public void Json_mode_is_any_compact_object_nested_at_most_three_deep(string text, bool matches) =>
        Assert.Equal(matches, Gbnf.Parse(JsonGrammar.ForJsonObject()).Matches(text));

    [Fact]
    public void Enum_values_with_quotes_backslashes_and_non_ASCII_are_matched_exactly()
    {
        var g = Grammar("""{"enum":["say \"hi\"","a\\b","naïve","line\nbreak"]}""");
        Assert.True(g.Matches("\"say \\\"hi\\\"\""));
        Assert.True(g.Matches("\"a\\\\b\""));
        Assert.True(g.Matches("\"naïve\""));
        Assert.True(g.Matches("\"line\\nbreak\""));
        Assert.False(g.Matches("\"naive\""));
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"x":{"type":"string","pattern":"^a"}}}""", At + ".properties.x.pattern")]
    [InlineData("""{"type":"string","format":"email"}""", At + ".format")]
    [InlineData("""{"$ref":"#/$defs/a"}""", At + ".$ref")]
    [InlineData("""{"anyOf":[{"type":"string"}]}""", At + ".anyOf")]
    [InlineData("""{"oneOf":[{"type":"string"}]}""", At + ".oneOf")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", At + ".allOf")]
    [InlineData("""{"not":{"type":"string"}}""", At + ".not")]
    [InlineData("""{"type":"object","patternProperties":{"^a":{}}}""", At + ".patternProperties")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"string"}}""", At + ".additionalProperties")]
    [InlineData("""{"type":"number","minimum":0}""", At + ".minimum")]
    [InlineData("""{"type":"integer","multipleOf":2}""", At + ".multipleOf")]
    [InlineData("""{"type":"array","items":[{"type":"string"}]}""", At + ".items")]
    [InlineData("""{"type":"array","uniqueItems":true}""", At + ".uniqueItems")]
    [InlineData("""{"type":"array","items":{"type":"object","properties":{"y":{"type":"string","format":"date"}}}}""", At + ".items.properties.y.format")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"if":{}}}}}}""", At + ".properties.a.properties.b.if")]
    public void An_unsupported_keyword_is_refused_by_its_path(string schema, string param)
    {
        var problem = Refusal(schema);
        Assert.Equal(param, problem.Param);
        Assert.True(problem.Unsupported);
    }

    [Theory]
    [InlineData("""{"type":"text"}""", At + ".type")]
    [InlineData("""{"type":"object","required":["a"],"properties":{"b":{"type":"string"}}}""", At + ".required")]
    [InlineData("""{"type":"string","minLength":5,"maxLength":2}""", At + ".minLength")]
    [InlineData("""{"type":"string","minLength":100000}""", At + ".minLength")]
    [InlineData("""{"type":"array","minItems":-1}""", At + ".minItems")]
    [InlineData("""{"enum":[]}""", At + ".enum")]
    [InlineData("""{"type":"integer","enum":["a"]}""", At + ".enum")]
    [InlineData("""{"maxLength":3}""", At + ".maxLength")]
    [InlineData("""{"type":"object","properties":{"a":3}}""", At + ".properties.a")]
    public void A_malformed_schema_is_refused_by_its_path(string schema, string param)
    {
        var problem = Refusal(schema);
        Assert.Equal(param, problem.Param);
        Assert.False(problem.Unsupported);
    }

    [Fact]
    public void Absurdly_large_schemas_are_refused()
    {
        var many = string.Join(",", Enumerable.Range(0, JsonGrammar.MaxSchemaNodes + 1).Select(i => $"\"p{i}\":{{\"type\":\"integer\"}}"));
        Assert.Contains("too large", Refusal("{\"type\":\"object\",\"properties\":{" + many + "}}").Message);

        var deep = "{\"type\":\"integer\"}";
        for (var i = 0; i <= JsonGrammar.MaxSchemaDepth; i++)
            deep = $$"""{"type":"array","items":{{deep}}}""";
        Assert.Contains("deeper", Refusal(deep).Message);

        var values = string.Join(",", Enumerable.Range(0, 200).Select(i => JsonSerializer.Serialize(new string('x', 400) + i)));
        Assert.Contains("too large", Refusal($$"""{"enum":[{{values}}]}""").Message);
    }

    [Fact]
    public void The_worker_builds_the_same_grammar_from_the_wire_form()
    {
        const string schema = """{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"]}""";
        using var doc = JsonDocument.Parse(schema);
        Assert.True(JsonGrammar.TryFromSchema(doc.RootElement, At, out var atIngress, out _));
        Assert.True(JsonGrammar.TryFromResponseFormat(new ResponseFormat { Type = ResponseFormat.JsonSchema, Name = "x", Schema = schema }, out var atWorker, out _));
        Assert.Equal(atIngress, atWorker);
        Assert.True(JsonGrammar.TryFromResponseFormat(new ResponseFormat { Type = ResponseFormat.JsonObject }, out var json, out _));
        Assert.Equal(JsonGrammar.ForJsonObject(), json);
        Assert.False(JsonGrammar.TryFromResponseFormat(new ResponseFormat { Type = ResponseFormat.JsonSchema }, out _, out var problem));
        Assert.Equal(At, problem!.Param);
    }

    [Fact]
    public void Annotations_and_true_additionalProperties_are_accepted_without_changing_the_grammar()
    {
        var plain = Grammar("""{"type":"object","properties":{"a":{"type":"integer"}}}""");
        var annotated = Grammar("""{"type":"object","title":"t","description":"d","$schema":"x","examples":[{}],"default":{},"additionalProperties":true,"properties":{"a":{"type":"integer","description":"n"}}}""");
        Assert.Equal(plain.RuleNames.Count, annotated.RuleNames.Count);
        Assert.True(annotated.Matches("""{"a":1}"""));
    }
}

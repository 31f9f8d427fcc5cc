using QwenNats.Messaging;
using QwenNats.Judge;
using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

/// <summary>
/// The worker's step cost model and how it charges requests. The costs below follow the shape measured for
/// llama.cpp on the tiny test model (a small cost per step, per token, and per position attended), where a token
/// after a long prefix costs several times one near the start.
/// </summary>
public sealed class StepCostModelTests
{
    private const double PerStep = 0.1, PerToken = 0.05, PerPosition = 0.002;

    private static double Cost(StepPart p, double speed = 1) => speed * (PerStep + PerToken * p.Tokens + PerPosition * p.Positions);

    private static StepCostModel Trained(double speed = 1, int seed = 1)
    {
        var model = new StepCostModel();
        var random = new Random(seed);
        for (var i = 0; i < 200; i++)
        {
            // Prompts of 8-120 tokens after prefixes of 0-150, and single generated tokens alone or in pairs.
            var step = (i % 3) switch
            {
                0 => StepPart.Of(random.Next(8, 120), random.Next(0, 150)),
                1 => StepPart.Of(1, random.Next(20, 300)),
                _ => StepPart.Of(1, random.Next(20, 300)) + StepPart.Of(1, random.Next(20, 300)),
            };
            model.Observe(step, Cost(step, speed) * (1 + 0.05 * (random.NextDouble() - 0.5)));
        }
        return model;
    }

    [Fact]
    public void The_positions_of_a_part_are_summed_from_its_first()
    {
        Assert.Equal(new StepPart(3, 10 + 11 + 12), StepPart.Of(3, 10));
        Assert.Equal(new StepPart(1, 7), StepPart.Of(1, 7));
        Assert.Equal(default, StepPart.Of(0, 5));
    }

    [Fact]
    public void The_fit_recovers_the_cost_of_steps_from_noisy_measurements()
    {
        var model = Trained();
        Assert.True(model.Ready);
        var k = model.Coefficients!.Value;
        Assert.InRange(k.PerToken, PerToken * 0.8, PerToken * 1.2);
        Assert.InRange(k.PerPosition, PerPosition * 0.9, PerPosition * 1.1);
        var prompt = StepPart.Of(66, 90);
        Assert.InRange(model.Predict(prompt) / Cost(prompt), 0.97, 1.03);
    }

    [Fact]
    public void Before_enough_steps_a_step_is_shared_by_tokens()
    {
        var model = new StepCostModel();
        var charges = model.Split([StepPart.Of(30, 0), StepPart.Of(10, 50)], 8);
        Assert.False(model.Ready);
        Assert.Null(model.Measured);
        Assert.Equal(6, charges[0], 6);
        Assert.Equal(2, charges[1], 6);
    }

    [Fact]
    public void A_request_is_charged_the_same_alone_or_batched()
    {
        var model = Trained();
        var mine = StepPart.Of(1, 120);
        var alone = model.Split([mine], Cost(mine))[0];
        var other = StepPart.Of(1, 200);
        var batched = model.Split([mine, other], Cost(mine + other))[0];
        var withPrompt = StepPart.Of(60, 40);
        var beside = model.Split([mine, withPrompt], Cost(mine + withPrompt))[0];
        Assert.InRange(batched / alone, 0.95, 1.05);
        Assert.InRange(beside / alone, 0.95, 1.05);
    }

    [Fact]
    public void A_frozen_fit_charges_by_its_shape_and_the_step_s_own_time_and_learns_nothing_more()
    {
        var model = Trained();
        Assert.Null(model.Measured);
        model.Freeze();
        var measured = model.Measured!;
        var part = StepPart.Of(40, 30);
        var charges = Enumerable.Range(0, 50).Select(_ => model.Split([part], Cost(part, speed: 3))[0]).ToList();
        Assert.Equal(measured, model.Measured);
        // A step three times dearer than the calibration says is charged three times, at once and for good.
        Assert.All(charges, c => Assert.Equal(Cost(part, speed: 3), c, 6));
        Assert.InRange(measured.TokenMs, PerToken * 0.8, PerToken * 1.2);
    }

    private static SampleSide Side(string colour, double ms, int tokens, DecodeWork? work, DecodeCostModel? model) =>
        new() { Colour = colour, ComputeMs = ms, ComputedTokens = tokens, Work = work, CostModel = model };

    [Fact]
    public void The_judge_prices_both_sides_work_with_live_s_costs()
    {
        var yardstick = new DecodeCostModel(PerStep, PerToken, PerPosition);
        // v1's sentiment prompt: 40 tokens after a 30-token prefix, plus a label step; v2's: 66 after 90.
        var liveWork = new DecodeWork(2, 42, StepPart.Of(40, 30).Positions + StepPart.Of(2, 70).Positions);
        var candidateWork = new DecodeWork(2, 68, StepPart.Of(66, 90).Positions + StepPart.Of(2, 156).Positions);
        double Ms(DecodeWork w, double speed) => speed * yardstick.Price(w);
        // The same build: about 2.8x the CPU for v2's prompt, 1.6x its tokens, and a ratio of 1.
        var live = Side("blue", Ms(liveWork, 1), 40, liveWork, yardstick);
        var same = Side("green", Ms(candidateWork, 1), 66, candidateWork, new DecodeCostModel(0.2, 0.01, 0.004));
        Assert.True(same.ComputeMs / live.ComputeMs > 2.5);
        Assert.Equal(1.0, Scorecard.ComputeRatio(live, same), 6);
        // Per decoded token, as before the work was reported, the same build looked 1.7x slower.
        Assert.True(Scorecard.ComputeRatio(live, same with { Work = null }) > 1.6);
        // A build twice as slow is twice as slow.
        Assert.Equal(2.0, Scorecard.ComputeRatio(live, same with { ComputeMs = Ms(candidateWork, 2) }), 6);
        // Without live's costs (an older worker), per decoded token, and the verdict says how many pairs were.
        Assert.Equal(same.ComputeMs / 66 / (live.ComputeMs / 40), Scorecard.ComputeRatio(live with { CostModel = null }, same), 6);
        var policy = new RolloutPolicy();
        var card = new Scorecard { RolloutId = "r-1" };
        var sample = new ShadowSample { Id = "s", RolloutId = "r-1", Task = InferTasks.Sentiment, Live = live with { Label = "positive" }, Candidate = same with { Label = "positive" } };
        card.Add(sample, 1, policy);
        card.Add(sample with { Live = sample.Live with { CostModel = null } }, 2, policy);
        Assert.Equal(1, card.ComputePerTokenPairs);
        var check = Evaluator.Evaluate(card, policy, DateTimeOffset.UtcNow).Checks.Single(c => c.Name == "compute_ratio");
        Assert.Contains("1 pairs compared per decoded token", check.Detail);
    }
}

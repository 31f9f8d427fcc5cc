using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

public sealed class LogProbsTests
{
    [Fact]
    public void Log_softmax_matches_the_definition()
    {
        float[] logits = [1f, 2f, 3f];
        var expected = 2 - Math.Log(Math.Exp(1) + Math.Exp(2) + Math.Exp(3));
        Assert.Equal(expected, LogProbs.LogSoftmaxAt(logits, 1), 6);
    }

    [Fact]
    public void Log_softmax_is_stable_for_large_logits()
    {
        float[] logits = [1000f, 1000f];
        Assert.Equal(Math.Log(0.5), LogProbs.LogSoftmaxAt(logits, 0), 6);
    }

    [Fact]
    public void Log_softmax_rejects_an_index_outside_the_vocabulary()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => LogProbs.LogSoftmaxAt(new float[] { 1f }, 1));
    }

    [Fact]
    public void Normalize_turns_label_scores_into_confidences_that_sum_to_one()
    {
        var c = LogProbs.Normalize([Math.Log(0.2), Math.Log(0.6), Math.Log(0.2)]);
        Assert.Equal(1.0, c.Sum(), 9);
        Assert.Equal(0.6, c[1], 9);
        Assert.Equal(c[0], c[2], 12);
    }

    [Fact]
    public void LogSumExp_normalises_log_softmax()
    {
        float[] logits = [1f, 2f, 3f, -1000f];
        var lse = QwenNats.Worker.LogProbs.LogSumExp(logits);
        Assert.Equal(1.0, logits.Sum(l => Math.Exp(l - lse)), 6);
        Assert.Equal(QwenNats.Worker.LogProbs.LogSoftmaxAt(logits, 2), logits[2] - lse, 6);
    }

    [Fact]
    public void TopIndices_are_the_largest_logits_largest_first()
    {
        float[] logits = [0.5f, 3f, -1f, 3f, 7f, 2f, 0f];
        Assert.Equal([4, 1, 3], QwenNats.Worker.LogProbs.TopIndices(logits, 3));
        Assert.Equal([4, 1, 3, 5, 0, 6, 2], QwenNats.Worker.LogProbs.TopIndices(logits, 20));
        Assert.Empty(QwenNats.Worker.LogProbs.TopIndices(logits, 0));
    }
}

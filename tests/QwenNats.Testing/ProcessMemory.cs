using System.Globalization;

namespace QwenNats.Testing;

/// <summary>Resident memory of a process, from <c>/proc/&lt;pid&gt;/status</c> (0 when it is gone).</summary>
public static class ProcessMemory
{
    public static long Resident(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}

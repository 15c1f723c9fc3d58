import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  escapePercent,
  quoteConfigValue,
  quoteShellWord,
  recoveryConfText,
  recoverySettings,
} from '../src/recovery-config.js';

describe('recovery settings', () => {
  it('escapes quotes, backslashes and newlines so a value cannot start a setting', () => {
    const text = recoveryConfText([['recovery_target_name', "a'b\\c\nrestore_command = 'x'"]]);
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 2, 'one comment line and one setting line');
    assert.equal(lines[1], "recovery_target_name = 'a''b\\\\c\\nrestore_command = ''x'''");
    assert.equal(quoteConfigValue('\r'), "'\\r'");
  });

  it('quotes restore_command words for the shell and doubles percent signs', () => {
    assert.equal(quoteShellWord("/tmp/it's"), "'/tmp/it'\\''s'");
    assert.equal(escapePercent('/data/100%'), '/data/100%%');
  });

  it('promotes at the target instead of pausing, and keeps archive cleanup off on 12+', () => {
    const settings = new Map(
      recoverySettings(15, {
        restoreCommand: 'fetch %f %p',
        target: { kind: 'xid', value: '1234' },
        targetInclusive: false,
        targetTimeline: 'latest',
      }),
    );
    assert.equal(settings.get('recovery_target_xid'), '1234');
    assert.equal(settings.get('recovery_target_inclusive'), 'false');
    assert.equal(settings.get('recovery_target_action'), 'promote');
    assert.equal(settings.get('archive_cleanup_command'), '');
  });

  it('leaves recovery_target_timeline unset for current on 10 and 11, where current is the default', () => {
    const names = recoverySettings(10, {
      restoreCommand: 'x',
      target: { kind: 'latest' },
      targetInclusive: true,
      targetTimeline: 'current',
    }).map(([name]) => name);
    assert.deepEqual(names, ['restore_command']);
  });
});

/** "Template / Buttons" in the header of WhatsApp conversations: the composer
 * for the customer (buttons or a list while the 24-hour window is open, a
 * template otherwise). What it sends appears in the conversation.
 *
 * Odoo 18 calls the actions with the thread's component, Odoo 19 with
 * {owner, thread, store}: both carry `thread`, and the component's env. */
import { threadActionsRegistry } from "@mail/core/common/thread_actions";

import { _t } from "@web/core/l10n/translation";

function envOf(arg) {
    return arg.owner?.env || arg.store?.env || arg.env;
}

threadActionsRegistry.add("whatsapp-send-template", {
    condition(arg) {
        return arg.thread?.model === "discuss.channel" && arg.thread.channel_type === "whatsapp";
    },
    icon: "fa fa-fw fa-whatsapp",
    name: _t("Template / Buttons"),
    async open(arg) {
        const env = envOf(arg);
        const action = await env.services.orm.call(
            "discuss.channel",
            "action_whatsapp_send_template",
            [[arg.thread.id]]
        );
        await env.services.action.doAction(action);
    },
    sequence: 5,
});

/** Delivery ticks on WhatsApp messages, in Discuss conversations and chatters.
 *
 * The server sends `whatsapp_state` (and `whatsapp_failure`) with the messages'
 * store data and pushes their changes as "mail.record/insert" updates: the
 * Message record keeps them as plain values (Odoo 18 and 19 store unknown keys
 * as attributes), so the tick follows without a reload. */
import { Message } from "@mail/core/common/message";

import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

/** state: [icon classes, label]; a clock, one tick, two ticks, two blue ticks. */
const TICKS = {
    queued: ["fa fa-clock-o", () => _t("Queued")],
    sent: ["fa fa-check", () => _t("Sent")],
    delivered: ["fa fa-check o-whatsapp-double", () => _t("Delivered")],
    read: ["fa fa-check o-whatsapp-double text-info", () => _t("Read")],
    failed: ["fa fa-exclamation-triangle text-danger", () => _t("Failed")],
    cancelled: ["fa fa-ban", () => _t("Cancelled")],
};

patch(Message.prototype, {
    /** The tick of an outbound WhatsApp message, or null. */
    get whatsappTick() {
        const state = this.props.message?.whatsapp_state;
        const tick = state && TICKS[state];
        if (!tick) {
            return null;
        }
        const failure = state === "failed" && this.props.message.whatsapp_failure;
        const label = failure ? `${tick[1]()}: ${failure}` : tick[1]();
        return { state, icon: tick[0], label, double: state === "delivered" || state === "read" };
    },
});

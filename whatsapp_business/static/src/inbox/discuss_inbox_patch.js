/** The WhatsApp inbox in Discuss: a "WhatsApp" sidebar category listing the
 * conversations (discuss.channel of type "whatsapp") with their unread counters. */
import * as mailRecord from "@mail/core/common/record";
import { Thread } from "@mail/core/common/thread_model";
import { DiscussApp } from "@mail/core/public_web/discuss_app_model";

import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

/** A relation to one record: Record.one on Odoo 18, fields.One on Odoo 19. */
function one(model, params) {
    return mailRecord.fields
        ? mailRecord.fields.One(model, params)
        : mailRecord.Record.one(model, params);
}

patch(DiscussApp.prototype, {
    setup() {
        super.setup(...arguments);
        this.whatsappCategory = one("DiscussAppCategory", {
            compute() {
                return {
                    extraClass: "o-whatsapp-DiscussSidebarCategory",
                    hideWhenEmpty: true,
                    icon: "fa fa-whatsapp",
                    id: "whatsapp_business.category",
                    name: _t("WhatsApp"),
                    sequence: 25,
                };
            },
            eager: true,
        });
    },
});

patch(Thread.prototype, {
    _computeDiscussAppCategory() {
        if (this.channel_type === "whatsapp") {
            return this.store.discuss.whatsappCategory;
        }
        return super._computeDiscussAppCategory(...arguments);
    },
    /** Like a chat: every message counts as unread for the members. */
    get isChatChannel() {
        return this.channel_type === "whatsapp" || super.isChatChannel;
    },
    /** The header shows the 24-hour window (the server sends it as description). */
    get allowDescription() {
        return this.channel_type === "whatsapp" || super.allowDescription;
    },
});
